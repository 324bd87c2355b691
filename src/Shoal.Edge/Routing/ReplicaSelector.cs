using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Shoal.Contracts;

namespace Shoal.Edge.Routing;

/// <summary>
/// Picks a replica for a request: least outstanding requests (the edge's own in-flight count
/// plus the replica's reported waiting queue), between two random candidates
/// (power of two choices), so a burst does not pile onto one replica.
/// </summary>
public sealed class ReplicaSelector
{
    private readonly ConcurrentDictionary<string, StrongBox<int>> _inFlight = new(StringComparer.Ordinal);

    public int InFlight(string replicaId) => _inFlight.TryGetValue(replicaId, out var box) ? Volatile.Read(ref box.Value) : 0;

    public RouteDestination? Pick(ReadOnlySpan<RouteDestination> destinations, string? exclude = null)
    {
        if (destinations.Length == 0) return null;
        if (destinations.Length == 1) return destinations[0].ReplicaId == exclude ? null : destinations[0];

        var i = Random.Shared.Next(destinations.Length);
        var j = Random.Shared.Next(destinations.Length - 1);
        if (j >= i) j++;
        var a = destinations[i];
        var b = destinations[j];
        if (a.ReplicaId == exclude) return b;
        if (b.ReplicaId == exclude) return a;
        return Load(a) <= Load(b) ? a : b;
    }

    /// <summary>Counts a request as outstanding on a replica until the returned lease is disposed.</summary>
    public Lease Begin(string replicaId)
    {
        var box = _inFlight.GetOrAdd(replicaId, static _ => new StrongBox<int>());
        Interlocked.Increment(ref box.Value);
        return new Lease(box);
    }

    private double Load(RouteDestination d) => InFlight(d.ReplicaId) + d.Waiting;

    /// <summary>One outstanding request.</summary>
    public readonly struct Lease(StrongBox<int> box) : IDisposable
    {
        public void Dispose() => Interlocked.Decrement(ref box.Value);
    }
}
