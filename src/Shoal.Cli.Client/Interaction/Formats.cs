using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Cli.Interaction;

/// <summary>Short human renderings of durations, ages and GPU sets, as the tables show them.</summary>
public static class Formats
{
    /// <summary>"12ms", "1.4s", "2m05s", "1h02m", "30d"; "-" when unknown or negative.</summary>
    public static string Duration(TimeSpan? value)
    {
        if (value is not { } d || d < TimeSpan.Zero)
        {
            return "-";
        }

        var inv = CultureInfo.InvariantCulture;
        if (d < TimeSpan.FromSeconds(1))
        {
            return string.Create(inv, $"{(long)d.TotalMilliseconds}ms");
        }

        if (d < TimeSpan.FromMinutes(1))
        {
            return string.Create(inv, $"{Math.Floor(d.TotalSeconds * 10) / 10:0.#}s");
        }

        if (d < TimeSpan.FromHours(1))
        {
            return string.Create(inv, $"{(int)d.TotalMinutes}m{d.Seconds:00}s");
        }

        if (d < TimeSpan.FromDays(1))
        {
            return string.Create(inv, $"{(int)d.TotalHours}h{d.Minutes:00}m");
        }

        return d.Hours == 0 ? string.Create(inv, $"{(long)d.TotalDays}d") : string.Create(inv, $"{(long)d.TotalDays}d{d.Hours}h");
    }

    /// <summary>The time between two instants, or "-" when either is missing.</summary>
    public static string Between(DateTimeOffset? from, DateTimeOffset? to) =>
        from is { } f && to is { } t ? Duration(t - f) : "-";

    /// <summary>"5s ago", "3m ago", "2h ago", "4d ago"; "-" when never.</summary>
    public static string Age(DateTimeOffset? then, DateTimeOffset now)
    {
        if (then is not { } t)
        {
            return "-";
        }

        var d = now - t;
        var inv = CultureInfo.InvariantCulture;
        return d switch
        {
            _ when d < TimeSpan.FromSeconds(1) => "just now",
            _ when d < TimeSpan.FromMinutes(1) => string.Create(inv, $"{(int)d.TotalSeconds}s ago"),
            _ when d < TimeSpan.FromHours(1) => string.Create(inv, $"{(int)d.TotalMinutes}m ago"),
            _ when d < TimeSpan.FromDays(1) => string.Create(inv, $"{(int)d.TotalHours}h ago"),
            _ => string.Create(inv, $"{(int)d.TotalDays}d ago"),
        };
    }

    /// <summary>A node's GPUs grouped by type: "2× rtx-4090", "1× rtx-3090, 1× rtx-4090 (simulated)"; "-" for none.</summary>
    public static string Gpus(NodeHardware hardware)
    {
        if (hardware.Gpus.Length == 0)
        {
            return "-";
        }

        if (hardware.Gpus.All(g => g.Simulated) || !hardware.Gpus.Any(g => g.Simulated))
        {
            var text = string.Join(", ", hardware.Gpus
                .GroupBy(g => g.Type, StringComparer.Ordinal)
                .Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Count()}× {g.Key}")));
            return hardware.Gpus[0].Simulated ? text + " (simulated)" : text;
        }

        // Some real, some simulated: say which are which.
        return string.Join(", ", hardware.Gpus
            .GroupBy(g => (g.Type, g.Simulated))
            .Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Count()}× {g.Key.Type}{(g.Key.Simulated ? " (simulated)" : "")}")));
    }

    /// <summary>A cluster's GPU per replica: "rtx-4090", or "2× rtx-4090" when a replica needs more than one.</summary>
    public static string ClusterGpu(ClusterDto cluster) =>
        cluster.GpuCount > 1 ? string.Create(CultureInfo.InvariantCulture, $"{cluster.GpuCount}× {cluster.Gpu}") : cluster.Gpu;

    /// <summary>A cluster's price: "$0.5/1M input, $1.5/1M output, $0.0004/GPU-second" (the parts it has).</summary>
    public static string Price(ClusterPrice price)
    {
        ArgumentNullException.ThrowIfNull(price);
        var parts = new List<string>(3);
        if (price.InputPerMillion is { } input) parts.Add(string.Create(CultureInfo.InvariantCulture, $"${input}/1M input"));
        if (price.OutputPerMillion is { } output) parts.Add(string.Create(CultureInfo.InvariantCulture, $"${output}/1M output"));
        if (price.PerGpuSecond is { } gpu) parts.Add(string.Create(CultureInfo.InvariantCulture, $"${gpu}/GPU-second"));
        return parts.Count == 0 ? "free" : string.Join(", ", parts);
    }

    /// <summary>Binary memory size: "24 GiB", "512 MiB".</summary>
    public static string MemoryMiB(long mib) =>
        mib >= 1024
            ? string.Create(CultureInfo.InvariantCulture, $"{mib / 1024.0:0.#} GiB")
            : string.Create(CultureInfo.InvariantCulture, $"{mib} MiB");
}
