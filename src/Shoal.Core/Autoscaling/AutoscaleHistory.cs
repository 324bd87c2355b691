namespace Shoal.Core.Autoscaling;

/// <summary>
/// What the autoscaler remembers of one cluster between decisions: recent recommendations (for the
/// scale-down window), when it last saw demand (for scale to zero), and whether it panics. Kept in
/// memory: a restarted server starts a fresh window, which delays a scale-down, never a scale-up.
/// </summary>
public sealed class AutoscaleHistory
{
    private readonly Queue<(DateTimeOffset At, int Recommended)> _recent = new();

    /// <summary>When the cluster last had any demand (or when the history began).</summary>
    public DateTimeOffset? LastDemandAt { get; set; }

    /// <summary>Panic mode lasts until then; null when not panicking.</summary>
    public DateTimeOffset? PanicUntil { get; set; }

    /// <summary>When the first recommendation was recorded: a scale-down waits until a whole window has been seen.</summary>
    public DateTimeOffset? Since { get; private set; }

    /// <summary>Adds a recommendation and drops those older than <paramref name="window"/>.</summary>
    public void Record(DateTimeOffset now, int recommended, TimeSpan window)
    {
        Since ??= now;
        _recent.Enqueue((now, recommended));
        while (_recent.TryPeek(out var oldest) && now - oldest.At > window) _recent.Dequeue();
    }

    /// <summary>The highest recommendation over the window (the one just recorded included).</summary>
    public int MaxRecommended => _recent.Count == 0 ? 0 : _recent.Max(r => r.Recommended);

    /// <summary>Recommendations held now.</summary>
    public int Count => _recent.Count;
}
