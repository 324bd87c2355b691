namespace Shoal.Sim;

/// <summary>
/// Simulated throughput per GPU type slug, relative to an RTX 4090. Kept here rather than taken from
/// Shoal.Core so the simulator stays dependency-free; the slugs are those of the Shoal GPU catalogue.
/// </summary>
public static class GpuSpeeds
{
    private static readonly Dictionary<string, double> s_speeds = new(StringComparer.OrdinalIgnoreCase)
    {
        ["rtx-4090"] = 1.0,
        ["rtx-3090"] = 0.5,
        ["rtx-4080"] = 0.7,
        ["rtx-5090"] = 1.4,
        ["a100-40gb"] = 1.2,
        ["a100-80gb"] = 1.3,
        ["h100"] = 2.5,
        ["h200"] = 2.8,
        ["l4"] = 0.35,
        ["l40s"] = 1.1,
        ["t4"] = 0.15,
        ["unknown"] = 1.0,
    };

    /// <summary>The known slugs and their speed factors.</summary>
    public static IReadOnlyDictionary<string, double> All => s_speeds;

    /// <summary>The speed factor of a slug; 1.0 for a slug not in the table.</summary>
    public static double For(string? gpuType) =>
        gpuType is not null && s_speeds.TryGetValue(gpuType.Trim(), out var speed) ? speed : 1.0;
}
