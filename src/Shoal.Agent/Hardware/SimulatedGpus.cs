using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Gpus;

namespace Shoal.Agent.Hardware;

/// <summary>Parses <c>--simulate-gpus</c> specs such as <c>rtx-4090:2</c> or <c>rtx-4090:1,rtx-3090:1</c>.</summary>
public static class SimulatedGpus
{
    public const int MaxCount = 16;

    /// <summary>The simulated GPUs a spec declares, indexed from 0 in the order given.</summary>
    /// <exception cref="AgentConfigurationException">The spec is malformed, names an unknown type, or asks for 0 or more than 16 GPUs.</exception>
    public static IReadOnlyList<GpuInfo> Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
        {
            throw Error(spec, "it is empty");
        }
        var gpus = new List<GpuInfo>();
        foreach (var part in spec.Split(','))
        {
            var entry = part.Trim();
            if (entry.Length == 0)
            {
                throw Error(spec, "it has an empty entry");
            }
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            var slug = (colon < 0 ? entry : entry[..colon]).Trim().ToLowerInvariant();
            var count = 1;
            if (colon >= 0)
            {
                var countText = entry[(colon + 1)..].Trim();
                if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out count))
                {
                    throw Error(spec, $"'{countText}' is not a GPU count (write TYPE:COUNT, such as rtx-4090:2)");
                }
            }
            if (count is < 1 or > MaxCount)
            {
                throw Error(spec, $"the count for {slug} must be 1 to {MaxCount}, not {count}");
            }
            var type = GpuCatalog.Find(slug)
                ?? throw Error(spec, $"'{slug}' is not a known GPU type (known: {string.Join(", ", GpuCatalog.All.Select(t => t.Slug))})");
            for (var i = 0; i < count; i++)
            {
                var index = gpus.Count;
                gpus.Add(new GpuInfo
                {
                    Index = index,
                    Uuid = $"GPU-sim-{index}",
                    Name = type.DisplayName,
                    Type = type.Slug,
                    MemoryMiB = type.MemoryMiB,
                    Simulated = true,
                });
            }
        }
        if (gpus.Count > MaxCount)
        {
            throw Error(spec, $"it declares {gpus.Count} GPUs; at most {MaxCount} may be simulated");
        }
        return gpus;
    }

    private static AgentConfigurationException Error(string spec, string why) =>
        new($"invalid --simulate-gpus '{spec}': {why}");
}
