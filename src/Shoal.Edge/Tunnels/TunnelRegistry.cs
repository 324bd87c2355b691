using System.Collections.Concurrent;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// The tunnels agents hold open to this edge, per node: idle ones wait to be claimed for a new
/// upstream connection. A node with no live tunnel is unreachable, so routing skips its replicas
/// the moment its last tunnel closes.
/// </summary>
public sealed class TunnelRegistry
{
    private readonly ConcurrentDictionary<string, NodeTunnels> _nodes = new(StringComparer.Ordinal);
    private long _opened;

    /// <summary>Raised when a node goes from no tunnel to one: its replicas became reachable.</summary>
    public event Action<string>? NodeReachable;

    /// <summary>Tunnels claimed for an upstream connection since start.</summary>
    public long Opened => Interlocked.Read(ref _opened);

    /// <summary>How long a claim waits for the node's agent to open another tunnel when all are busy.</summary>
    public TimeSpan ClaimWait { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long the agent has to connect to the replica and answer.</summary>
    public TimeSpan OpenTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>True while the node has at least one tunnel open (idle or carrying a connection).</summary>
    public bool HasTunnels(string nodeId) => _nodes.TryGetValue(nodeId, out var n) && Volatile.Read(ref n.Live) > 0;

    /// <summary>Tunnels open now, for a node (idle or busy).</summary>
    public int LiveCount(string nodeId) => _nodes.TryGetValue(nodeId, out var n) ? Volatile.Read(ref n.Live) : 0;

    /// <summary>Tunnels open now, over all nodes.</summary>
    public int TotalLive
    {
        get
        {
            var total = 0;
            foreach (var n in _nodes.Values) total += Volatile.Read(ref n.Live);
            return total;
        }
    }

    /// <summary>
    /// Takes one of the node's <paramref name="max"/> tunnel places for a tunnel about to be added
    /// (<see cref="AddReserved"/>) or given back (<see cref="Unreserve"/>); false when all are taken.
    /// </summary>
    internal bool TryReserve(string nodeId, int max)
    {
        var node = _nodes.GetOrAdd(nodeId, static _ => new NodeTunnels());
        while (true)
        {
            var held = Volatile.Read(ref node.Held);
            if (held >= max) return false;
            if (Interlocked.CompareExchange(ref node.Held, held + 1, held) == held) return true;
        }
    }

    /// <summary>Gives back a place taken by <see cref="TryReserve"/> for a tunnel that was not added.</summary>
    internal void Unreserve(string nodeId)
    {
        if (_nodes.TryGetValue(nodeId, out var node)) Interlocked.Decrement(ref node.Held);
    }

    /// <summary>Adds a tunnel to its node's pool, in a place taken by <see cref="TryReserve"/>; the place is freed when the tunnel ends.</summary>
    internal void AddReserved(EdgeTunnel tunnel)
    {
        var node = _nodes.GetOrAdd(tunnel.NodeId, static _ => new NodeTunnels());
        var first = Interlocked.Increment(ref node.Live) == 1;
        tunnel.Ended.ContinueWith(static (_, n) =>
        {
            var node = (NodeTunnels)n!;
            Interlocked.Decrement(ref node.Live);
            Interlocked.Decrement(ref node.Held);
        }, node, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        tunnel.Watch(static _ => { });
        node.Idle.Enqueue(tunnel);
        node.Signal();
        if (first) NodeReachable?.Invoke(tunnel.NodeId);
    }

    /// <summary>Claims an idle tunnel of the node and opens it to the replica's port.</summary>
    /// <exception cref="TunnelException">The node has no tunnel, or none became free in time, or the agent refused.</exception>
    public async ValueTask<Stream> OpenAsync(string nodeId, int port, CancellationToken ct)
    {
        if (!_nodes.TryGetValue(nodeId, out var node)) throw new TunnelException($"node {nodeId} has no tunnel to this edge");
        var deadline = DateTime.UtcNow + ClaimWait;
        while (true)
        {
            while (node.Idle.TryDequeue(out var tunnel))
            {
                if (tunnel.TryClaim())
                {
                    Interlocked.Increment(ref _opened);
                    return await tunnel.OpenAsync(port, OpenTimeout, ct);
                }
            }
            if (Volatile.Read(ref node.Live) == 0) throw new TunnelException($"node {nodeId} has no tunnel to this edge");
            var wait = deadline - DateTime.UtcNow;
            if (wait <= TimeSpan.Zero) throw new TunnelException($"node {nodeId} had no free tunnel within {ClaimWait.TotalSeconds:0.#} s");
            var arrived = node.Arrival;
            if (!node.Idle.IsEmpty) continue;
            try
            {
                await arrived.WaitAsync(wait, ct);
            }
            catch (TimeoutException)
            {
                // Loop once more; the deadline check ends it.
            }
        }
    }

    private sealed class NodeTunnels
    {
        public readonly ConcurrentQueue<EdgeTunnel> Idle = new();
        public int Live;
        // Live tunnels and places reserved for tunnels being added: what the per-node limit counts.
        public int Held;
        private TaskCompletionSource _arrival = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Arrival => Volatile.Read(ref _arrival).Task;

        public void Signal() => Interlocked.Exchange(ref _arrival, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}
