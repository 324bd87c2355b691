namespace Shoal.Core.Scheduling;

/// <summary>
/// How much a node can be trusted to stay up, from its recent history: each disconnect within the
/// window halves, thirds… the score (1 / (1 + recent disconnects)), and a node connected for less
/// than the window loses up to a tenth more. A node with <see cref="FlappingDisconnects"/> or more
/// disconnects within the window is flapping: placement uses it only when no steady node fits, and
/// its replicas are moved to steady nodes.
/// </summary>
/// <param name="Score">0 (flaps all the time) to 1 (connected for the whole window, no disconnects).</param>
/// <param name="RecentDisconnects">Disconnects within the window.</param>
/// <param name="Flapping">Too many recent disconnects to be given work.</param>
public readonly record struct NodeReliability(double Score, int RecentDisconnects, bool Flapping)
{
    /// <summary>How far back disconnects count.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(10);

    /// <summary>Disconnects within the window that make a node flapping.</summary>
    public const int FlappingDisconnects = 3;

    public static readonly NodeReliability Steady = new(1.0, 0, false);

    /// <summary>
    /// The reliability now of a node that lost its connection at <paramref name="disconnects"/>
    /// (any order, older ones ignored) and has been connected since <paramref name="connectedSince"/>
    /// (null while disconnected).
    /// </summary>
    public static NodeReliability Compute(IEnumerable<DateTimeOffset> disconnects, DateTimeOffset? connectedSince, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(disconnects);
        var since = now - Window;
        // Most nodes have no recent disconnect: no enumerator for them (this runs per node per pass).
        var recent = disconnects is IReadOnlyCollection<DateTimeOffset> { Count: 0 } ? 0 : disconnects.Count(d => d > since && d <= now);
        var up = connectedSince is { } c && c <= now ? now - c : TimeSpan.Zero;
        var uptimeShare = Math.Min(1.0, up / Window);
        var score = 1.0 / (1 + recent) * (0.9 + 0.1 * uptimeShare);
        return new NodeReliability(Math.Round(score, 3), recent, recent >= FlappingDisconnects);
    }
}
