using System.Collections.Frozen;
using System.Text;

namespace Shoal.Core.Gpus;

/// <summary>A GPU model Shoal knows: its slug, name, memory and relative speed.</summary>
/// <param name="Slug">Canonical type, such as <c>rtx-4090</c>.</param>
/// <param name="DisplayName">Marketing name.</param>
/// <param name="MemoryMiB">Typical VRAM.</param>
/// <param name="SpeedFactor">Throughput relative to an RTX 4090 (1.0); the simulator uses it.</param>
public sealed record GpuType(string Slug, string DisplayName, long MemoryMiB, double SpeedFactor);

/// <summary>
/// The GPU types a cluster may ask for, and the mapping from the names <c>nvidia-smi</c>
/// prints to those types.
/// </summary>
public static class GpuCatalog
{
    private static readonly GpuType[] s_types =
    [
        new("rtx-3060", "NVIDIA GeForce RTX 3060", 12288, 0.25),
        new("rtx-3070", "NVIDIA GeForce RTX 3070", 8192, 0.3),
        new("rtx-3080", "NVIDIA GeForce RTX 3080", 10240, 0.4),
        new("rtx-3090", "NVIDIA GeForce RTX 3090", 24576, 0.5),
        new("rtx-3090-ti", "NVIDIA GeForce RTX 3090 Ti", 24576, 0.55),
        new("rtx-4060-ti", "NVIDIA GeForce RTX 4060 Ti", 16384, 0.35),
        new("rtx-4070", "NVIDIA GeForce RTX 4070", 12288, 0.45),
        new("rtx-4080", "NVIDIA GeForce RTX 4080", 16384, 0.7),
        new("rtx-4090", "NVIDIA GeForce RTX 4090", 24564, 1.0),
        new("rtx-5090", "NVIDIA GeForce RTX 5090", 32607, 1.4),
        new("rtx-a4000", "NVIDIA RTX A4000", 16376, 0.35),
        new("rtx-a5000", "NVIDIA RTX A5000", 24564, 0.5),
        new("rtx-a6000", "NVIDIA RTX A6000", 49140, 0.6),
        new("rtx-6000-ada", "NVIDIA RTX 6000 Ada Generation", 49140, 1.0),
        new("t4", "Tesla T4", 15360, 0.15),
        new("l4", "NVIDIA L4", 23034, 0.35),
        new("l40s", "NVIDIA L40S", 46068, 1.1),
        new("a10", "NVIDIA A10", 23028, 0.4),
        new("v100", "Tesla V100", 32768, 0.35),
        new("a100-40gb", "NVIDIA A100 40GB", 40960, 1.2),
        new("a100-80gb", "NVIDIA A100 80GB", 81920, 1.3),
        new("h100", "NVIDIA H100", 81559, 2.5),
        new("h200", "NVIDIA H200", 143771, 2.8),
        new("b200", "NVIDIA B200", 183359, 4.0),
    ];

    private static readonly FrozenDictionary<string, GpuType> s_bySlug =
        s_types.ToFrozenDictionary(t => t.Slug, StringComparer.Ordinal);

    /// <summary>All known types, in catalogue order.</summary>
    public static IReadOnlyList<GpuType> All => s_types;

    public static bool IsKnown(string slug) => s_bySlug.ContainsKey(slug);

    public static GpuType? Find(string slug) => s_bySlug.GetValueOrDefault(slug);

    /// <summary>Speed of a type relative to an RTX 4090; 1.0 for unknown types.</summary>
    public static double SpeedFactor(string slug) => Find(slug)?.SpeedFactor ?? 1.0;

    /// <summary>
    /// Maps a name as <c>nvidia-smi</c> prints it ("NVIDIA GeForce RTX 4090",
    /// "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3") to a slug. Unknown models get a
    /// slug made from their name, so they are still schedulable by that exact type.
    /// </summary>
    public static string SlugFromName(string name, long memoryMiB = 0)
    {
        var n = name.Trim().ToUpperInvariant();
        if (n.Contains("A100", StringComparison.Ordinal))
        {
            return n.Contains("80GB", StringComparison.Ordinal) || memoryMiB > 60_000 ? "a100-80gb" : "a100-40gb";
        }
        if (n.Contains("H100", StringComparison.Ordinal) || n.Contains("H800", StringComparison.Ordinal)) return "h100";
        if (n.Contains("H200", StringComparison.Ordinal)) return "h200";
        if (n.Contains("B200", StringComparison.Ordinal)) return "b200";
        if (n.Contains("L40S", StringComparison.Ordinal)) return "l40s";
        if (n.Contains("6000 ADA", StringComparison.Ordinal)) return "rtx-6000-ada";

        var slug = Slugify(n
            .Replace("NVIDIA", "", StringComparison.Ordinal)
            .Replace("GEFORCE", "", StringComparison.Ordinal)
            .Replace("TESLA", "", StringComparison.Ordinal)
            .Replace("-PCIE", " ", StringComparison.Ordinal)
            .Replace(" PCIE", " ", StringComparison.Ordinal));
        // "rtx-a6000" stays as is; "v100-sxm2-32gb" becomes "v100".
        foreach (var t in s_types)
        {
            if (slug == t.Slug || slug.StartsWith(t.Slug + "-", StringComparison.Ordinal) && t.Slug is "v100" or "t4" or "a10" or "l4")
            {
                return t.Slug;
            }
        }
        return slug.Length == 0 ? "unknown" : slug;
    }

    private static string Slugify(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var c in s.ToLowerInvariant())
        {
            if (char.IsAsciiLetterOrDigit(c)) sb.Append(c);
            else if (sb.Length > 0 && sb[^1] != '-') sb.Append('-');
        }
        return sb.ToString().Trim('-');
    }
}
