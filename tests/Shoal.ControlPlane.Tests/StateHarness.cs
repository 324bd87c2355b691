using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// The control plane's state over a real SQLite store, driven directly: agents are played by
/// calls (connect, heartbeat), time is a <see cref="FakeTimeProvider"/>, and each reconcile pass is
/// run by the test, so every step of a rollout can be looked at. No background loops.
/// </summary>
internal sealed class StateHarness : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("shoal-state");
    private readonly Dictionary<string, int> _gpus = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Id, object Session)> _nodes = new(StringComparer.Ordinal);
    private CountingStore _store = null!;

    private StateHarness(ServerOptions options)
    {
        Options = options;
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 23, 12, 0, 0, TimeSpan.Zero));

    public ServerOptions Options { get; }

    public ControlPlaneState State { get; private set; } = null!;

    /// <summary>The store under the state: counts its commits, can hold them back.</summary>
    internal CountingStore Store => _store;

    /// <summary>The session a node's agent is connected with (for sending it messages directly).</summary>
    public object Session(string name) => _nodes[name].Session;

    private static readonly Shoal.Core.Security.SecretBox s_box = Shoal.Core.Security.SecretBox.FromKeyText(Shoal.Core.Security.SecretBox.NewKeyText());

    public static async Task<StateHarness> StartAsync(Action<ServerOptions>? configure = null)
    {
        var options = new ServerOptions { AllowLoopbackNodes = true, AllowSimulatedGpus = true };
        configure?.Invoke(options);
        var harness = new StateHarness(options);
        await harness.OpenAsync();
        return harness;
    }

    private async Task OpenAsync()
    {
        _store = new CountingStore(SqliteShoalStore.InDirectory(_dir.Path, s_box));
        await _store.MigrateAsync();
        State = new ControlPlaneState(_store, Time, Options, NullLogger<ControlPlaneState>.Instance);
        await State.LoadAsync(default);
    }

    /// <summary>Registers and connects a node with <paramref name="gpus"/> RTX 4090s.</summary>
    public async Task<string> AddNodeAsync(string name, int gpus = 1)
    {
        var node = await State.RegisterNodeAsync(name, "hash-" + name, default);
        var session = new object();
        _nodes[name] = (node.Id, session);
        _gpus[name] = gpus;
        await State.NodeConnectedAsync(node.Id, session, WireAgent.Hello(name, ("rtx-4090", gpus)), default);
        return node.Id;
    }

    public string NodeId(string name) => _nodes[name].Id;

    /// <summary>
    /// Stops this state and loads a new one from the same store (a server restart); every node
    /// reconnects and reports its replicas as they were.
    /// </summary>
    public async Task RestartAsync()
    {
        var before = await AllReplicasAsync();
        State.Dispose();
        await _store.DisposeAsync();
        await OpenAsync();
        foreach (var (name, (id, _)) in _nodes.ToList())
        {
            var session = new object();
            _nodes[name] = (id, session);
            var reports = before.Where(r => r.Replica.NodeId == id).Select(r => Report(r.Replica, r.Load)).ToArray();
            await State.NodeConnectedAsync(id, session, WireAgent.Hello(name, ("rtx-4090", _gpus[name])) with { Replicas = reports }, default);
        }
    }

    /// <summary>The node's connection drops and comes back at once, reporting its replicas as they were.</summary>
    public async Task BounceAsync(string name)
    {
        var (id, session) = _nodes[name];
        var before = await AllReplicasAsync();
        await State.NodeDisconnectedAsync(id, session, "test: connection dropped");
        var fresh = new object();
        _nodes[name] = (id, fresh);
        var reports = before.Where(r => r.Replica.NodeId == id).Select(r => Report(r.Replica, r.Load)).ToArray();
        await State.NodeConnectedAsync(id, fresh, WireAgent.Hello(name, ("rtx-4090", _gpus[name])) with { Replicas = reports }, default);
    }

    /// <summary>Like <see cref="BounceAsync"/>, but the node comes back saying something else in its hello (another address…).</summary>
    public async Task ReconnectAsync(string name, Func<HelloMessage, HelloMessage> change)
    {
        var (id, session) = _nodes[name];
        var before = await AllReplicasAsync();
        await State.NodeDisconnectedAsync(id, session, "test: connection dropped");
        var fresh = new object();
        _nodes[name] = (id, fresh);
        var reports = before.Where(r => r.Replica.NodeId == id).Select(r => Report(r.Replica, r.Load)).ToArray();
        await State.NodeConnectedAsync(id, fresh, change(WireAgent.Hello(name, ("rtx-4090", _gpus[name])) with { Replicas = reports }), default);
    }

    private static ReplicaReport Report(ReplicaRecord r, ReplicaLoad? load) => new()
    {
        ReplicaId = r.Id,
        State = r.State,
        Healthy = r.Healthy,
        HostPort = r.HostPort,
        Restarts = r.Restarts,
        Reason = r.Reason,
        StartedAt = r.StartedAt,
        ReadyAt = r.ReadyAt,
        PulledAt = r.PulledAt,
        Load = load,
    };

    public Task<ReconcileResult> ReconcileAsync() => State.ReconcileAsync(default);

    public async Task<IReadOnlyList<ReplicaView>> ReplicasAsync(string cluster = "demo") =>
        (await State.GetClusterAsync(cluster, default))!.Replicas;

    public async Task<ClusterView> ClusterAsync(string cluster = "demo") => (await State.GetClusterAsync(cluster, default))!;

    private async Task<IReadOnlyList<ReplicaView>> AllReplicasAsync() =>
        (await State.ListClustersAsync(default)).SelectMany(c => c.Replicas).ToList();

    /// <summary>Sends a heartbeat from the replica's node with this report of it.</summary>
    public async Task ReportAsync(string replicaId, Func<ReplicaReport, ReplicaReport> change)
    {
        var r = (await AllReplicasAsync()).Single(v => v.Replica.Id == replicaId).Replica;
        var (name, (id, session)) = _nodes.Single(n => n.Value.Id == r.NodeId);
        var report = change(new ReplicaReport
        {
            ReplicaId = r.Id,
            State = r.State,
            Healthy = r.Healthy,
            HostPort = r.HostPort,
            Restarts = r.Restarts,
            StartedAt = r.StartedAt,
            ReadyAt = r.ReadyAt,
            PulledAt = r.PulledAt,
        });
        await State.HeartbeatAsync(id, session, new HeartbeatMessage { Replicas = [report] }, default);
    }

    /// <summary>The replica passed its probe: ready, in routing, with the given load (none running by default).</summary>
    public Task ReadyAsync(string replicaId, double running = 0, bool metrics = true) =>
        ReportAsync(replicaId, r => r with
        {
            State = ReplicaState.Ready,
            Healthy = true,
            HostPort = 40000 + Math.Abs(replicaId.GetHashCode(StringComparison.Ordinal) % 20000),
            StartedAt = r.StartedAt ?? Time.GetUtcNow(),
            PulledAt = r.PulledAt ?? Time.GetUtcNow(),
            ReadyAt = r.ReadyAt ?? Time.GetUtcNow(),
            Load = metrics ? new ReplicaLoad { Running = running } : null,
        });

    /// <summary>Reports a load for a replica (as the agent's heartbeat carries it).</summary>
    public Task LoadAsync(string replicaId, double running, double waiting = 0) =>
        ReportAsync(replicaId, r => r with { Load = new ReplicaLoad { Running = running, Waiting = waiting } });

    /// <summary>The replica ids the edge would route to.</summary>
    public async Task<string[]> RoutedAsync(string cluster = "demo") =>
        (await State.BuildRouteTableAsync(1, default)).Clusters[cluster].Destinations.Select(d => d.ReplicaId).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The assignment a node's agent would get for a replica.</summary>
    public async Task<Assignment> AssignmentAsync(ReplicaRecord r)
    {
        var sets = await State.GetAssignmentsAsync([r.NodeId!], default);
        return sets[r.NodeId!].Replicas.Single(a => a.ReplicaId == r.Id);
    }

    public async Task<IReadOnlyList<ClusterEventRecord>> EventsAsync(string cluster = "demo") =>
        (await State.ListEventsAsync(cluster, 1000, default))!;

    public async ValueTask DisposeAsync()
    {
        State.Dispose();
        await _store.DisposeAsync();
        _dir.Dispose();
    }
}
