using System.Collections.Concurrent;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Reconciliation;
using Shoal.Core.Scheduling;
using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

/// <summary>
/// The control plane's model of the world: clusters, replicas and nodes, loaded from the
/// store at start. Every change of desired state is written to the store in one transaction
/// and only then applied in memory, under one lock. Observed state (what agents report) is
/// applied in memory at once and flushed to the store in batches: agents re-report it anyway.
/// </summary>
public sealed partial class ControlPlaneState : IDisposable
{
    private readonly IShoalStore _store;
    private readonly TimeProvider _time;
    private readonly ServerOptions _options;
    private readonly ILogger<ControlPlaneState> _logger;
    private readonly StateGate _gate = new();
    private readonly StateBatch<ReportOp> _reports;
    private readonly NodeAddressPolicy _addressPolicy;
    private readonly ReconcilerOptions _reconcilerOptions;

    private readonly Dictionary<string, ClusterRecord> _clustersById = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _clusterIdsByName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ReplicaRecord> _replicas = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeRecord> _nodes = new(StringComparer.Ordinal);
    // Read without the lock by heartbeats (liveness, loads); entries are added and removed under it.
    private readonly ConcurrentDictionary<string, NodeLiveness> _liveness = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ReplicaLoad> _loads = new(StringComparer.Ordinal);
    // Model ids replicas list on /v1/models (the route's models for clusters that declare none).
    private readonly ConcurrentDictionary<string, string[]> _replicaModels = new(StringComparer.Ordinal);
    // When each replica's load was last reported: a drain ends on a report of no work taken after it began.
    private readonly ConcurrentDictionary<string, DateTimeOffset> _loadsAt = new(StringComparer.Ordinal);
    // Replicas draining: a heartbeat's load report of no work may end the drain.
    private readonly ConcurrentDictionary<string, bool> _draining = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirtyReplicas = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirtyNodes = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirtyClusters = new(StringComparer.Ordinal);

    public ControlPlaneState(IShoalStore store, TimeProvider time, ServerOptions options, ILogger<ControlPlaneState> logger)
    {
        _reports = new StateBatch<ReportOp>(_gate, "ReportBatch", ApplyReportsBatchLocked, static (batch, e) =>
        {
            foreach (var op in batch) op.TrySetException(e);
        });
        _creates = new StateBatch<PendingCreate>(_gate, nameof(CreateClusterAsync), CreateBatchLockedAsync, static (batch, e) =>
        {
            // The commit (or the lock) failed: none of the batch was created, and every caller hears why.
            foreach (var c in batch) c.TrySetException(e);
        });
        _reconcilerOptions = new ReconcilerOptions
        {
            NodeGracePeriod = options.NodeGracePeriod,
            CrashLoopRestarts = options.CrashLoopRestarts,
            CrashLoopWindow = options.CrashLoopWindow,
            CrashLoopAvoidFor = options.CrashLoopAvoidFor,
            RolloutFailureRestarts = options.RolloutFailureRestarts,
            DrainSettle = options.DrainSettle,
            MaxFailedAttempts = options.MaxFailedAttempts,
            AttemptBackoff = options.AttemptBackoff,
        };
        _store = store;
        _time = time;
        _options = options;
        _logger = logger;
        _addressPolicy = NodeAddressPolicy.FromOptions(options);
    }

    /// <summary>Where edges may connect to direct-mode nodes (the server adds its own ports once it listens).</summary>
    public NodeAddressPolicy AddressPolicy => _addressPolicy;

    /// <summary>Raised after a change that may need the reconciler (new cluster, scale, node connected…).</summary>
    public event Action? ReconcileNeeded;

    /// <summary>Raised after a change that may alter the edge's route table.</summary>
    public event Action? RoutesChanged;

    /// <summary>Raised (outside the lock) with the nodes whose assignment set changed.</summary>
    public event Action<IReadOnlyCollection<string>>? AssignmentsChanged;

    /// <summary>Raised when observed state is waiting to be flushed to the store.</summary>
    public event Action? FlushNeeded;

    /// <summary>Raised after a node registered, so edges learn its credential hash.</summary>
    public event Action? NodeCredentialsChanged;

    private volatile Dictionary<string, string> _credentials = new(StringComparer.Ordinal);
    private readonly HashSet<string> _awaitingReconnect = new(StringComparer.Ordinal);
    private int _awaitingReconnectCount;

    /// <summary>When the state was loaded (server start).</summary>
    public DateTimeOffset LoadedAt { get; private set; }

    /// <summary>
    /// True until every node that was serving before this server started has reconnected. Until then
    /// the route table lacks their replicas, so edges are better off keeping the table they had.
    /// </summary>
    public bool AwaitingReconnects => Volatile.Read(ref _awaitingReconnectCount) > 0;

    /// <summary>
    /// Node id → secret hash of every node, as an immutable snapshot readable without the lock.
    /// Never given to an edge as it is: each edge gets the verifiers of its own tunnel credentials
    /// derived from it (<see cref="Shoal.Core.Security.TunnelCredential"/>).
    /// </summary>
    public IReadOnlyDictionary<string, string> NodeCredentials => _credentials;

    private void RefreshCredentialsLocked()
    {
        var next = new Dictionary<string, string>(_nodes.Count, StringComparer.Ordinal);
        foreach (var n in _nodes.Values) next[n.Id] = n.SecretHash;
        _credentials = next;
    }

    private NodeReliability ReliabilityLocked(string nodeId, DateTimeOffset now) =>
        _liveness.TryGetValue(nodeId, out var live) ? ReliabilityLocked(live, now) : NodeReliability.Steady;

    private static NodeReliability ReliabilityLocked(NodeLiveness live, DateTimeOffset now)
    {
        while (live.RecentDisconnects.TryPeek(out var oldest) && now - oldest > NodeReliability.Window) live.RecentDisconnects.Dequeue();
        return NodeReliability.Compute(live.RecentDisconnects, live.ConnectedSince, now);
    }

    public async Task LoadAsync(CancellationToken ct)
    {
        var snapshot = await _store.LoadAsync(ct);
        var now = _time.GetUtcNow();
        await _gate.WaitAsync(ct);
        try
        {
            foreach (var c in snapshot.Clusters)
            {
                _clustersById[c.Id] = c;
                _clusterIdsByName[c.Name] = c.Id;
            }
            foreach (var r in snapshot.Replicas)
            {
                _replicas[r.Id] = r;
                if (r.DrainingSince is not null) _draining[r.Id] = true;
                LoadRestartsLocked(r);
            }
            foreach (var n in snapshot.Nodes)
            {
                // No agent is connected to a server that just started: every node waits for its
                // agent, with the grace period counted from now so a restart evicts nothing.
                var state = n.State is NodeState.Offline ? NodeState.Offline : NodeState.Disconnected;
                _nodes[n.Id] = n with { State = state };
                var live = new NodeLiveness
                {
                    DisconnectedSince = state == NodeState.Disconnected ? now : null,
                    // Until its agent says hello, the node is reached as it was before this server started.
                    Tunnel = n.Tunnel,
                    AddressRefused = n.Tunnel ? null : _addressPolicy.CheckAddress(n.Address, n.DirectAllowed),
                };
                foreach (var d in n.RecentDisconnects.Where(d => now - d <= NodeReliability.Window).Order()) live.RecentDisconnects.Enqueue(d);
                _liveness[n.Id] = live;
                if (n.State is NodeState.Ready or NodeState.Cordoned)
                {
                    _awaitingReconnect.Add(n.Id);
                    // Its agent may be in a long reconnect back-off while this server was down.
                    _liveness[n.Id].Grace = _options.RestartGracePeriod > _options.NodeGracePeriod ? _options.RestartGracePeriod : null;
                }
            }
            Volatile.Write(ref _awaitingReconnectCount, _awaitingReconnect.Count);
            LoadedAt = now;
            _eventSeq = snapshot.LastEventSeq;
            RefreshCredentialsLocked();
            await LoadRunsLocked(ct);
        }
        finally
        {
            _gate.Release();
        }
        LogLoaded(_logger, snapshot.Clusters.Count, snapshot.Replicas.Count, snapshot.Nodes.Count, _store.Kind);
    }

    // ---------------------------------------------------------------- clusters (API)

    /// <summary>Creates a cluster in the default project; <see cref="StoreConflictException"/> when the name is taken.</summary>
    public Task<ClusterRecord> CreateClusterAsync(ClusterSpec spec, CancellationToken ct) => CreateClusterAsync(spec, "default", null, ct);

    /// <summary>
    /// Creates a cluster owned by <paramref name="project"/>; <paramref name="actor"/> (the API key
    /// that asked) goes into its first event. <see cref="StoreConflictException"/> when the name is taken.
    /// </summary>
    public async Task<ClusterRecord> CreateClusterAsync(ClusterSpec spec, string project, string? actor, CancellationToken ct) =>
        (await CreateClusterViewAsync(spec, project, actor, ct)).Cluster;

    /// <summary>Deletes a cluster and its replicas; false when there is no such cluster.</summary>
    public async Task<bool> DeleteClusterAsync(string name, CancellationToken ct)
    {
        HashSet<string> changedNodes = new(StringComparer.Ordinal);
        await _gate.WaitAsync(ct);
        try
        {
            if (!_clusterIdsByName.TryGetValue(name, out var id)) return false;
            var replicas = _replicas.Values.Where(r => r.ClusterId == id).ToList();
            var changes = new StoreChanges();
            changes.DeleteClusters.Add(id);
            foreach (var r in replicas)
            {
                if (r.NodeId is not null) changedNodes.Add(r.NodeId);
            }
            var bumped = BumpRevisions(changedNodes, changes);
            await CommitLockedAsync(changes, ct);
            _clustersById.Remove(id);
            _clusterIdsByName.Remove(name);
            // Its events went with it in the store; those not yet flushed go too.
            _pendingEvents.RemoveAll(e => e.ClusterId == id);
            foreach (var r in replicas)
            {
                ForgetReplicaLocked(r.Id);
            }
            ApplyNodes(bumped);
        }
        finally
        {
            _gate.Release();
        }
        LogClusterDeleted(_logger, name);
        AssignmentsChanged?.Invoke(changedNodes);
        RoutesChanged?.Invoke();
        return true;
    }

    /// <summary>The project that owns a cluster, or null when there is no such cluster (no view is built).</summary>
    public async Task<string?> ClusterProjectAsync(string name, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            return _clusterIdsByName.TryGetValue(name, out var id) ? _clustersById[id].Project : null;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<ClusterView?> GetClusterAsync(string name, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (!_clusterIdsByName.TryGetValue(name, out var id)) return null;
            return ViewOf(_clustersById[id], _replicas.Values.Where(r => r.ClusterId == id));
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<IReadOnlyList<ClusterView>> ListClustersAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            // Group once: a scan of all replicas per cluster would be clusters x replicas under the lock.
            var byCluster = _replicas.Values.ToLookup(r => r.ClusterId, StringComparer.Ordinal);
            return _clustersById.Values.OrderBy(c => c.Name, StringComparer.Ordinal).Select(c => ViewOf(c, byCluster[c.Id])).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<IReadOnlyList<NodeView>> ListNodesAsync(CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        await _gate.WaitAsync(ct);
        try
        {
            var byNode = _replicas.Values.Where(r => r.NodeId is not null).ToLookup(r => r.NodeId!, StringComparer.Ordinal);
            return _nodes.Values.OrderBy(n => n.Name, StringComparer.Ordinal).ThenBy(n => n.Id, StringComparer.Ordinal)
                .Select(n => NodeViewOf(n, byNode[n.Id], ReliabilityLocked(n.Id, now))).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<NodeView?> GetNodeAsync(string idOrName, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            var node = _nodes.GetValueOrDefault(idOrName);
            if (node is null)
            {
                var byName = _nodes.Values.Where(n => n.Name == idOrName).ToList();
                if (byName.Count != 1) return null;
                node = byName[0];
            }
            return NodeViewOf(node, _replicas.Values.Where(r => r.NodeId == node.Id), ReliabilityLocked(node.Id, _time.GetUtcNow()));
        }
        finally
        {
            _gate.Release();
        }
    }

    private ClusterView ViewOf(ClusterRecord cluster, IEnumerable<ReplicaRecord> clusterReplicas)
    {
        var now = _time.GetUtcNow();
        var replicas = clusterReplicas
            .OrderBy(r => r.CreatedAt)
            .ThenBy(r => r.Id, StringComparer.Ordinal)
            .Select(r => new ReplicaView(r, r.NodeId is null ? null : _nodes.GetValueOrDefault(r.NodeId), _loads.GetValueOrDefault(r.Id), IsRoutable(r)))
            .ToList();
        int updated = 0, outdated = 0, draining = 0;
        // Views need no list of unlinked nodes (a scan of every node): only the reconciler's passes look for lost nodes.
        var input = replicas.Count == 0 ? null : ReconcileInputLocked(now, unlinked: false);
        foreach (var r in replicas)
        {
            if (r.Replica.DrainingSince is not null) draining++;
            else if (Replacements.ReasonFor(input!, cluster, r.Replica) is null) updated++;
            else outdated++;
        }
        return new ClusterView(cluster, replicas, updated, outdated, draining)
        {
            Autoscale = cluster.Spec.Autoscale is null ? null : AutoscaleStatusLocked(cluster.Id),
            ColdStart = ColdStartLocked(cluster.Id),
            Models = ModelsOf(cluster, replicas),
        };
    }

    private void ForgetReplicaLocked(string id)
    {
        // Its node's next heartbeat takes the lock: what the node owns has changed.
        if (_replicas.Remove(id, out var gone) && gone.NodeId is { } nodeId && _liveness.TryGetValue(nodeId, out var live)) live.Applied = null;
        _loads.TryRemove(id, out _);
        _replicaModels.TryRemove(id, out _);
        _loadsAt.TryRemove(id, out _);
        _draining.TryRemove(id, out _);
        _restartTimes.Remove(id);
        _quietReplicas.Remove(id);
        _leavingFlappingNodes.Remove(id);
        _dirtyReplicas.Remove(id);
    }

    private NodeView NodeViewOf(NodeRecord node, IEnumerable<ReplicaRecord> nodeReplicas, NodeReliability reliability)
    {
        var used = nodeReplicas.ToList();
        var usedGpus = used.Sum(r => r.GpuIndexes.Length);
        var live = _liveness.GetValueOrDefault(node.Id);
        // Heartbeats update the node's last contact in memory only (no store write for a heartbeat that
        // changes nothing); views show whichever is newer.
        if (live is not null && live.LastSeen != default && (node.LastSeenAt is not { } stored || live.LastSeen > stored)) node = node with { LastSeenAt = live.LastSeen };
        return new NodeView(node, used.Count, Math.Max(0, node.Hardware.Gpus.Length - usedGpus), reliability)
        {
            Tunnel = live?.Tunnel ?? false,
            AddressRefused = live?.AddressRefused,
            DisconnectedSince = node.State == NodeState.Disconnected ? live?.DisconnectedSince : null,
        };
    }

    // ---------------------------------------------------------------- nodes (gateway)

    /// <summary>Creates a node for an agent that registered with a valid provisioning token (with the defaults of a token without policy).</summary>
    public Task<NodeRecord> RegisterNodeAsync(string name, string secretHash, CancellationToken ct) =>
        RegisterNodeAsync(name, secretHash, null, ct);

    /// <summary>
    /// Creates a node for an agent that registered with a valid provisioning token; the token's
    /// policy (approval, GPU cap, labels, direct mode) becomes the node's.
    /// </summary>
    public async Task<NodeRecord> RegisterNodeAsync(string name, string secretHash, ProvisioningTokenRecord? token, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        var node = new NodeRecord
        {
            Id = "n-" + Secrets.RandomId(12),
            Name = name,
            SecretHash = secretHash,
            State = NodeState.Disconnected,
            RegisteredAt = now,
            Approved = token is not { ManualApproval: true },
            Labels = token?.Labels ?? [],
            MaxGpus = token?.MaxGpus,
            DirectAllowed = token?.AllowDirect ?? false,
        };
        await _gate.WaitAsync(ct);
        try
        {
            var changes = new StoreChanges();
            changes.UpsertNodes.Add(node);
            await CommitLockedAsync(changes, ct);
            _nodes[node.Id] = node;
            _liveness[node.Id] = new NodeLiveness { DisconnectedSince = now };
            RefreshCredentialsLocked();
        }
        finally
        {
            _gate.Release();
        }
        LogNodeRegistered(_logger, node.Id, name, node.Approved ? "approved" : "pending approval", node.Labels);
        NodeCredentialsChanged?.Invoke();
        return node;
    }

    /// <summary>The stored secret hash of a node, for authenticating a returning agent.</summary>
    public async Task<string?> GetNodeSecretHashAsync(string nodeId, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            return _nodes.TryGetValue(nodeId, out var n) ? n.SecretHash : null;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// An agent said hello on a new session: record its hardware, mark it ready and connected,
    /// take in what it runs, and return the assignment set to send it.
    /// </summary>
    public async Task<AssignmentsMessage> NodeConnectedAsync(string nodeId, object session, HelloMessage hello, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        AssignmentsMessage assignments;
        await _gate.WaitAsync(ct);
        try
        {
            var node = _nodes[nodeId];
            var updated = node with
            {
                Hardware = hello.Hardware,
                Runtimes = hello.Runtimes,
                Images = hello.Images,
                Address = string.IsNullOrWhiteSpace(hello.Address) ? "127.0.0.1" : hello.Address,
                State = node.Draining ? NodeState.Draining : node.Cordoned ? NodeState.Cordoned : NodeState.Ready,
                AckedRevision = Math.Min(node.Revision, hello.AppliedRevision),
                LastSeenAt = now,
                Tunnel = hello.Tunnel,
            };
            var changes = new StoreChanges();
            changes.UpsertNodes.Add(updated);
            await CommitLockedAsync(changes, ct);
            _nodes[nodeId] = updated;
            _dirtyNodes.Remove(nodeId);
            var live = _liveness[nodeId];
            live.AddressRefused = hello.Tunnel ? null : _addressPolicy.CheckAddress(updated.Address, updated.DirectAllowed);
            if (live.AddressRefused is { } refused)
            {
                LogAddressRefused(_logger, nodeId, hello.NodeName, refused);
                foreach (var r in _replicas.Values.Where(r => r.NodeId == nodeId && r.State == ReplicaState.Ready))
                {
                    RecordObservedLocked(r.ClusterId, now, ClusterEventTypes.Unroutable,
                        $"node {updated.Name} is direct-mode and {refused}: no traffic is routed to the replica", r.Id, nodeId);
                }
            }
            if (live.DisconnectedSince is { } away && !_awaitingReconnect.Contains(nodeId) && node.State != NodeState.Offline)
            {
                // Back within its grace period (a server restart is not the node's doing, so says nothing).
                foreach (var r in _replicas.Values.Where(r => r.NodeId == nodeId))
                {
                    RecordObservedLocked(r.ClusterId, now, ClusterEventTypes.NodeBack,
                        $"node {hello.NodeName} back after {Seconds(now - away)} s: replica kept", r.Id, nodeId);
                }
            }
            live.Session = session;
            live.LastSeen = now;
            live.DisconnectedSince = null;
            live.ConnectedSince = now;
            live.Grace = null;
            live.Tunnel = hello.Tunnel;
            if (_awaitingReconnect.Remove(nodeId)) Volatile.Write(ref _awaitingReconnectCount, _awaitingReconnect.Count);
            ApplyReportsLocked(nodeId, hello.Replicas, now);
            assignments = BuildAssignmentsLocked(nodeId, _replicas.Values.Where(r => r.NodeId == nodeId));
        }
        finally
        {
            _gate.Release();
        }
        LogNodeConnected(_logger, nodeId, hello.NodeName, hello.Hardware.Gpus.Length);
        ReconcileNeeded?.Invoke();
        RoutesChanged?.Invoke();
        FlushNeeded?.Invoke();
        return assignments;
    }

    /// <summary>
    /// A session ended. Only the node's current session counts; an older one closing is ignored.
    /// A <paramref name="planned"/> end (the agent said it is stopping) is no drop: the node's reliability is not lowered.
    /// </summary>
    public Task NodeDisconnectedAsync(string nodeId, object session, string reason, bool planned = false) =>
        NodesDisconnectedAsync([(nodeId, session)], reason, planned);

    /// <summary>Sessions ended, for one reason (say, missed heartbeats): marked together, under one hold of the lock.</summary>
    public async Task NodesDisconnectedAsync(IReadOnlyList<(string NodeId, object Session)> sessions, string reason, bool planned = false)
    {
        var now = _time.GetUtcNow();
        var marked = new List<string>(sessions.Count);
        await _gate.WaitAsync();
        try
        {
            var byNode = sessions.Count > 1 ? _replicas.Values.Where(r => r.NodeId is not null).ToLookup(r => r.NodeId!, StringComparer.Ordinal) : null;
            foreach (var (nodeId, session) in sessions)
            {
                if (!_liveness.TryGetValue(nodeId, out var live) || !ReferenceEquals(live.Session, session)) continue;
                live.Session = null;
                live.DisconnectedSince = now;
                live.ConnectedSince = null;
                if (!planned) live.RecentDisconnects.Enqueue(now);
                var node = _nodes[nodeId];
                var updated = node with
                {
                    State = node.State == NodeState.Offline ? NodeState.Offline : NodeState.Disconnected,
                    Disconnects = planned ? node.Disconnects : node.Disconnects + 1,
                    RecentDisconnects = [.. live.RecentDisconnects.Where(d => now - d <= NodeReliability.Window)],
                };
                _nodes[nodeId] = updated;
                _dirtyNodes.Add(nodeId);
                foreach (var r in byNode?[nodeId] ?? _replicas.Values.Where(r => r.NodeId == nodeId))
                {
                    RecordObservedLocked(r.ClusterId, now, ClusterEventTypes.NodeLost,
                        $"node {node.Name} disconnected ({reason}): replica out of routing; replaced after {Seconds(_options.NodeGracePeriod)} s unless the node returns",
                        r.Id, nodeId);
                }
                marked.Add(nodeId);
            }
        }
        finally
        {
            _gate.Release();
        }
        if (marked.Count == 0) return;
        foreach (var nodeId in marked)
        {
            if (planned) LogNodeStopped(_logger, nodeId, reason);
            else LogNodeDisconnected(_logger, nodeId, reason);
        }
        RoutesChanged?.Invoke();
        FlushNeeded?.Invoke();
        ReconcileNeeded?.Invoke();
    }

    /// <summary>
    /// A heartbeat: take in observed replica state and the applied revision. One that says what the
    /// last one said (loads aside) is taken in without the state's lock and writes nothing to the store.
    /// </summary>
    public Task HeartbeatAsync(string nodeId, object session, HeartbeatMessage heartbeat, CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return Task.FromCanceled(ct);
        var now = _time.GetUtcNow();
        if (!_liveness.TryGetValue(nodeId, out var live) || !ReferenceEquals(live.Session, session)) return Task.CompletedTask;
        live.LastSeen = now;
        if (live.Applied is { } applied && applied.SameAs(heartbeat))
        {
            TakeLoads(heartbeat.Replicas, applied.Owned, now, out var loadRoutes, out var drainOver);
            if (loadRoutes) RoutesChanged?.Invoke();
            if (drainOver) ReconcileNeeded?.Invoke();
            return Task.CompletedTask;
        }
        // With other reports, under one hold of the lock.
        return RunReportAsync(() => HeartbeatLocked(nodeId, live, session, heartbeat, now));
    }

    private StateEffects HeartbeatLocked(string nodeId, NodeLiveness live, object session, HeartbeatMessage heartbeat, DateTimeOffset now)
    {
        if (!ReferenceEquals(live.Session, session)) return StateEffects.None;
        var node = _nodes[nodeId];
        var acked = Math.Min(node.Revision, heartbeat.AppliedRevision);
        if (acked != node.AckedRevision)
        {
            // Kept in memory, written with the node's next other change: an agent says what it applied
            // again in its hello, so a store write per acknowledgement (10,000 in a deploy of 10,000
            // replicas) would buy nothing.
            _nodes[nodeId] = node with { AckedRevision = acked, LastSeenAt = now };
        }
        if (heartbeat.Images is { } images && !images.SequenceEqual(_nodes[nodeId].Images, StringComparer.Ordinal))
        {
            _nodes[nodeId] = _nodes[nodeId] with { Images = images };
            _dirtyNodes.Add(nodeId);
        }
        var (routes, reconcile) = ApplyReportsLocked(nodeId, heartbeat.Replicas, now);
        live.Applied = new AppliedHeartbeat(heartbeat.AppliedRevision, _nodes[nodeId].Images, heartbeat.Replicas, OwnedLocked(nodeId, heartbeat.Replicas));
        // A replica ready, failed or restarted moves a rollout on (or back); a draining one's load may end its drain.
        return StateEffects.Flush | (routes ? StateEffects.Routes : 0) | (reconcile ? StateEffects.Reconcile : 0);
    }

    /// <summary>A report's small change, applied with others under one hold of the lock (<see cref="StateBatch{TOp}"/>).</summary>
    private Task RunReportAsync(Func<StateEffects> apply)
    {
        var op = new ReportOp(apply);
        _reports.Add(op);
        return op.Task;
    }

    // Each report on its own (one failing fails only its caller); callers completed and events raised once released.
    private Task<Action> ApplyReportsBatchLocked(List<ReportOp> batch)
    {
        var effects = StateEffects.None;
        foreach (var op in batch)
        {
            try
            {
                effects |= op.Apply();
            }
            catch (Exception e)
            {
                op.Error = e;
            }
        }
        return Task.FromResult<Action>(() =>
        {
            Raise(effects);
            foreach (var op in batch)
            {
                if (op.Error is null) op.TrySetResult();
                else op.TrySetException(op.Error);
            }
        });
    }

    // Completed on the batch's thread (no RunContinuationsAsynchronously): a caller's continuation
    // runs there, after the lock is released, instead of waking a thread of its own.
    private sealed class ReportOp(Func<StateEffects> apply) : TaskCompletionSource
    {
        public Func<StateEffects> Apply { get; } = apply;
        public Exception? Error { get; set; }
    }

    private void Raise(StateEffects effects)
    {
        if ((effects & StateEffects.Routes) != 0) RoutesChanged?.Invoke();
        if ((effects & StateEffects.Reconcile) != 0) ReconcileNeeded?.Invoke();
        if ((effects & StateEffects.Flush) != 0) FlushNeeded?.Invoke();
    }

    // The reported replicas that are this node's. Caller holds the lock.
    private HashSet<string> OwnedLocked(string nodeId, ReplicaReport[] reports)
    {
        var owned = new HashSet<string>(StringComparer.Ordinal);
        foreach (var report in reports)
        {
            if (_replicas.TryGetValue(report.ReplicaId, out var r) && r.NodeId == nodeId) owned.Add(r.Id);
        }
        return owned;
    }

    // Loads of the node's own replicas: whether an edge's waiting figure changed, and whether a draining one reported no work.
    private void TakeLoads(ReplicaReport[] reports, IReadOnlySet<string> owned, DateTimeOffset now, out bool routes, out bool drainOver)
    {
        routes = drainOver = false;
        foreach (var report in reports)
        {
            if (report.Load is not { } load || !owned.Contains(report.ReplicaId)) continue;
            var previous = _loads.GetValueOrDefault(report.ReplicaId);
            _loads[report.ReplicaId] = load;
            _loadsAt[report.ReplicaId] = now;
            routes |= previous is null || previous.Waiting != load.Waiting;
            drainOver |= _draining.ContainsKey(report.ReplicaId) && load.Running + load.Waiting <= 0;
        }
    }

    /// <summary>The agent acknowledged an assignment revision.</summary>
    public Task AckAsync(string nodeId, object session, long revision, CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return Task.FromCanceled(ct);
        if (!_liveness.TryGetValue(nodeId, out var live) || !ReferenceEquals(live.Session, session)) return Task.CompletedTask;
        return RunReportAsync(() =>
        {
            if (!ReferenceEquals(live.Session, session)) return StateEffects.None;
            var node = _nodes[nodeId];
            var acked = Math.Min(node.Revision, revision);
            if (acked > node.AckedRevision)
            {
                // In memory only (see HeartbeatLocked): the agent's hello says it again after a restart.
                _nodes[nodeId] = node with { AckedRevision = acked };
            }
            return StateEffects.None;
        });
    }

    /// <summary>The current assignment sets of these nodes, built from one pass over the replicas.</summary>
    public async Task<IReadOnlyDictionary<string, AssignmentsMessage>> GetAssignmentsAsync(IReadOnlyCollection<string> nodeIds, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            var wanted = nodeIds.Where(_nodes.ContainsKey).ToHashSet(StringComparer.Ordinal);
            var byNode = _replicas.Values.Where(r => r.NodeId is not null && wanted.Contains(r.NodeId)).ToLookup(r => r.NodeId!, StringComparer.Ordinal);
            return wanted.ToDictionary(id => id, id => BuildAssignmentsLocked(id, byNode[id]), StringComparer.Ordinal);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Sessions whose agent has missed too many heartbeats (read without the state's lock).</summary>
    public Task<IReadOnlyList<(string NodeId, object Session)>> FindStaleSessionsAsync(CancellationToken ct)
    {
        // The scan runs every StaleCheckInterval, and marking takes the state's lock (a reconcile pass may hold
        // it a moment): the rule is shortened by both (the scan's period, and an eighth of an interval for the
        // mark) so a silent agent is marked within MissedHeartbeats intervals of its last heartbeat, all of it
        // included: 3 × 2 s − 0.1 s − 0.25 s = 5.65 s of silence at the defaults.
        var cutoff = _time.GetUtcNow() - StaleAfter(_options);
        var stale = new List<(string, object)>();
        foreach (var (id, live) in _liveness)
        {
            if (live.Session is { } session && live.LastSeen < cutoff) stale.Add((id, session));
        }
        return Task.FromResult<IReadOnlyList<(string NodeId, object Session)>>(stale);
    }

    /// <summary>How long an agent may be silent before its session is closed as stale (see <see cref="FindStaleSessionsAsync"/>).</summary>
    public static TimeSpan StaleAfter(ServerOptions options)
    {
        var interval = options.HeartbeatInterval;
        var scan = TimeSpan.FromTicks(Math.Min(Reconciliation.ControlLoops.StaleCheckInterval.Ticks, interval.Ticks / 8));
        return interval * options.MissedHeartbeats - scan - interval / 8;
    }

    /// <summary>
    /// Why the agent's hello is refused by the operator's policy (simulated GPUs the server does not
    /// accept, more GPUs than the node's token allows); null when it is accepted.
    /// </summary>
    public async Task<string?> CheckHelloAsync(string nodeId, HelloMessage hello, CancellationToken ct)
    {
        var gpus = hello.Hardware.Gpus;
        if (!_options.AllowSimulatedGpus && gpus.Any(g => g.Simulated))
        {
            return "hello: simulated GPUs are not accepted by this server (it accepts them with --allow-simulated-gpus)";
        }
        await _gate.WaitAsync(ct);
        try
        {
            if (_nodes.GetValueOrDefault(nodeId) is { MaxGpus: { } max } && gpus.Length > max)
            {
                return $"hello: the node reports {gpus.Length} GPUs; its provisioning token allows at most {max}";
            }
            return null;
        }
        finally
        {
            _gate.Release();
        }
    }

    private (bool Routes, bool Reconcile) ApplyReportsLocked(string nodeId, ReplicaReport[] reports, DateTimeOffset now)
    {
        var routes = false;
        var reconcile = false;
        foreach (var report in reports)
        {
            if (!_replicas.TryGetValue(report.ReplicaId, out var replica) || replica.NodeId != nodeId) continue;
            var reason = RedactLocked(replica, report.Reason);
            var updated = RecordRestartsLocked(replica, replica with
            {
                State = report.State,
                Reason = reason,
                Healthy = report.Healthy,
                HostPort = report.HostPort,
                Restarts = report.Restarts,
                ExitCode = report.ExitCode,
                // The first pull is the cold start's; a restarted or re-adopting agent does not move it.
                PulledAt = replica.PulledAt ?? report.PulledAt,
                StartedAt = report.StartedAt ?? replica.StartedAt,
                ReadyAt = report.ReadyAt ?? replica.ReadyAt,
                PullProgress = report.PullProgress,
                ImageDigest = report.ImageDigest ?? replica.ImageDigest,
                LastFailure = report.State is ReplicaState.Failed or ReplicaState.Unhealthy && reason is { Length: > 0 } ? reason : replica.LastFailure,
            }, now);
            if (report.ImageDigest is { Length: > 0 } digest && _clustersById.TryGetValue(replica.ClusterId, out var cluster)
                && cluster.ImageDigest is null && Generations.IsCurrent(cluster, replica))
            {
                // The first digest a node resolves pins the cluster: later replicas run exactly it.
                _clustersById[cluster.Id] = cluster with { ImageDigest = digest };
                _dirtyClusters.Add(cluster.Id);
            }
            if (report.Load is { } load)
            {
                var previous = _loads.GetValueOrDefault(report.ReplicaId);
                _loads[report.ReplicaId] = load;
                _loadsAt[report.ReplicaId] = now;
                routes |= previous is null || previous.Waiting != load.Waiting;
                reconcile |= replica.DrainingSince is not null && load.Running + load.Waiting <= 0;
            }
            if (report.Models is { Length: > 0 } models && !(_replicaModels.TryGetValue(report.ReplicaId, out var known) && known.AsSpan().SequenceEqual(models)))
            {
                _replicaModels[report.ReplicaId] = models;
                routes = true;
            }
            if (updated != replica)
            {
                RecordReplicaTransitionLocked(replica, updated, now);
                routes |= updated.State != replica.State || updated.Healthy != replica.Healthy || updated.HostPort != replica.HostPort;
                reconcile |= updated.State != replica.State || updated.Restarts != replica.Restarts;
                _replicas[replica.Id] = updated with { UpdatedAt = now };
                _dirtyReplicas.Add(replica.Id);
            }
        }
        return (routes, reconcile);
    }

    private AssignmentsMessage BuildAssignmentsLocked(string nodeId, IEnumerable<ReplicaRecord> nodeReplicas)
    {
        var node = _nodes[nodeId];
        var list = new List<Assignment>();
        foreach (var r in nodeReplicas)
        {
            // Each replica runs its own generation's spec: an update must not restart the replicas it has not replaced yet.
            var cluster = _clustersById[r.ClusterId];
            var spec = Generations.SpecFor(cluster, r.Generation);
            list.Add(new Assignment
            {
                ReplicaId = r.Id,
                Cluster = spec.Name,
                Generation = r.Generation,
                Image = spec.Image,
                Gpu = spec.Gpu,
                GpuIndexes = r.GpuIndexes,
                Port = spec.Port,
                // Secrets (secret env, registry credentials) travel only here, over the node's authenticated
                // connection, and only to a node with the labels the cluster asks for, whatever placed the replica there.
                Env = MayHoldSecrets(node, spec) ? spec.ReplicaEnv() : spec.Env,
                Args = spec.Args,
                Health = spec.Health,
                ImageDigest = Generations.DigestFor(cluster, r.Generation),
                RegistryAuth = MayHoldSecrets(node, spec) ? spec.RegistryAuth : null,
            });
        }
        list.Sort((a, b) => string.CompareOrdinal(a.ReplicaId, b.ReplicaId));
        return new AssignmentsMessage { Revision = node.Revision, Replicas = [.. list] };
    }

    /// <summary>Writes observed state that changed since the last flush.</summary>
    public async Task FlushAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (_dirtyReplicas.Count == 0 && _dirtyNodes.Count == 0 && _dirtyClusters.Count == 0 && _pendingEvents.Count == 0) return;
            var changes = new StoreChanges();
            changes.AppendEvents.AddRange(_pendingEvents);
            foreach (var id in _dirtyClusters)
            {
                if (_clustersById.TryGetValue(id, out var c)) changes.UpsertClusters.Add(c);
            }
            foreach (var id in _dirtyReplicas)
            {
                if (_replicas.TryGetValue(id, out var r)) changes.UpsertReplicas.Add(r);
            }
            foreach (var id in _dirtyNodes)
            {
                if (_nodes.TryGetValue(id, out var n)) changes.UpsertNodes.Add(n);
            }
            await CommitLockedAsync(changes, ct);
            _dirtyReplicas.Clear();
            _dirtyNodes.Clear();
            _dirtyClusters.Clear();
            _pendingEvents.Clear();
        }
        finally
        {
            _gate.Release();
        }
    }

    // ---------------------------------------------------------------- reconciliation

    /// <summary>
    /// One pass of the reconciler (<see cref="Reconciler"/>, pure code in Core) over the model as it is
    /// now; its writes commit together, then apply in memory.
    /// </summary>
    public async Task<ReconcileResult> ReconcileAsync(CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        ReconcilePlan plan;
        await _gate.WaitAsync(ct);
        try
        {
            var planStart = System.Diagnostics.Stopwatch.GetTimestamp();
            plan = Reconciler.Plan(ReconcileInputLocked(now));
            StateGate.PlanDone(planStart);
            // Moves off flapping nodes are remembered in memory only: a restarted server decides afresh.
            _leavingFlappingNodes.ExceptWith(plan.StoppedLeavingFlapping);
            _leavingFlappingNodes.UnionWith(plan.StartedLeavingFlapping);
            if (plan.IsEmpty) return new ReconcileResult(0, 0, 0, plan.Pending);

            var changes = new StoreChanges();
            changes.UpsertClusters.AddRange(plan.Clusters.Values);
            changes.UpsertReplicas.AddRange(plan.Upserts);
            changes.DeleteReplicas.AddRange(plan.Deleted);
            changes.UpsertNodes.AddRange(plan.Nodes.Values);
            foreach (var e in plan.Events) changes.AppendEvents.Add(NumberedLocked(e));
            await CommitLockedAsync(changes, ct);

            foreach (var id in plan.Deleted) ForgetReplicaLocked(id);
            foreach (var r in plan.Upserts)
            {
                _replicas[r.Id] = r;
                if (r.DrainingSince is not null) _draining[r.Id] = true;
            }
            foreach (var c in plan.Clusters.Values) _clustersById[c.Id] = c;
            ApplyNodes(plan.Nodes.Values);
            // A node that did not come back within the restart grace is lost like any other.
            if (plan.OfflineNodes.Count > 0 && _awaitingReconnect.RemoveWhere(plan.OfflineNodes.Contains) > 0)
            {
                Volatile.Write(ref _awaitingReconnectCount, _awaitingReconnect.Count);
            }
        }
        finally
        {
            _gate.Release();
        }

        foreach (var id in plan.OfflineNodes) LogNodeOffline(_logger, id, plan.Nodes[id].Name);
        foreach (var (cluster, generation, failure) in plan.RolledBack) LogRolledBack(_logger, cluster, generation, failure);
        if (plan.ChangedNodes.Count > 0) AssignmentsChanged?.Invoke(plan.ChangedNodes);
        if (plan.Removed > 0 || plan.Placed > 0 || plan.Routes) RoutesChanged?.Invoke();
        if (plan.Created > 0 || plan.Removed > 0 || plan.Placed > 0) LogReconciled(_logger, plan.Created, plan.Removed, plan.Placed, plan.Pending);
        return new ReconcileResult(plan.Created, plan.Removed, plan.Placed, plan.Pending);
    }

    /// <summary>What the reconciler decides from: the state's own collections, not copied. Caller holds the lock.</summary>
    private ReconcileInput ReconcileInputLocked(DateTimeOffset now, bool unlinked = true) => new()
    {
        Now = now,
        Clusters = _clustersById,
        Replicas = _replicas,
        Nodes = _nodes,
        Link = id => LinkLocked(id, now),
        Serving = IsServing,
        Loads = _loads,
        LoadsAt = _loadsAt,
        RestartTimes = _restartTimes,
        LeavingFlappingNodes = _leavingFlappingNodes,
        Options = _reconcilerOptions,
        Unlinked = unlinked ? _liveness.Where(kv => kv.Value.Session is null).Select(kv => kv.Key).ToList() : null,
    };

    private NodeLink LinkLocked(string nodeId, DateTimeOffset now) =>
        _liveness.TryGetValue(nodeId, out var live)
            ? new NodeLink(live.Session is not null, live.DisconnectedSince, live.Grace, live.AddressRefused, ReliabilityLocked(live, now))
            : NodeLink.Unknown;

    private List<NodeRecord> BumpRevisions(IEnumerable<string> nodeIds, StoreChanges changes)
    {
        var bumped = new List<NodeRecord>();
        foreach (var id in nodeIds)
        {
            var n = _nodes[id] with { Revision = _nodes[id].Revision + 1 };
            bumped.Add(n);
            changes.UpsertNodes.Add(n);
        }
        return bumped;
    }

    private void ApplyNodes(IEnumerable<NodeRecord> nodes)
    {
        foreach (var n in nodes)
        {
            _nodes[n.Id] = n;
            _dirtyNodes.Remove(n.Id);
        }
    }

    // ---------------------------------------------------------------- routing

    /// <summary>Takes requests: ready, healthy, on a connected node, and not draining.</summary>
    private bool IsRoutable(ReplicaRecord r) => r.DrainingSince is null && IsServing(r);

    /// <summary>Could take requests (ready, healthy, on a connected node), draining or not.</summary>
    private bool IsServing(ReplicaRecord r) =>
        r.State == ReplicaState.Ready && r.Healthy && r.HostPort is not null &&
        r.NodeId is not null && _liveness.TryGetValue(r.NodeId, out var live) && (live.Session is not null || _awaitingReconnect.Contains(r.NodeId)) &&
        RouteRefusalLocked(r, live) is null;

    /// <summary>Why no edge may be sent to this replica (its direct-mode node's address or the port it reported); null when one may.</summary>
    private string? RouteRefusalLocked(ReplicaRecord r, NodeLiveness live)
    {
        if (r.HostPort is not { } port) return null;
        if (live.Tunnel) return port is < 1 or > 65535 ? $"port {port} is not between 1 and 65535" : null;
        return live.AddressRefused ?? _addressPolicy.CheckPort(_nodes[r.NodeId!].Address, port);
    }

    /// <summary>The route table for the edge: every cluster, with its ready replicas on connected nodes.</summary>
    /// <summary>
    /// A routable replica's destination, reused from the last table while what it is built from is the
    /// same (a table of 10,000 replicas then builds no address strings); its load is refreshed. Caller holds the lock.
    /// </summary>
    private RouteDestination DestinationLocked(ReplicaRecord r, long version)
    {
        var tunnel = _liveness[r.NodeId!].Tunnel;
        var nodeAddress = _nodes[r.NodeId!].Address;
        var waiting = _loads.GetValueOrDefault(r.Id)?.Waiting ?? 0;
        if (!_routeDestinations.TryGetValue(r.Id, out var cached) || cached.HostPort != r.HostPort || cached.Tunnel != tunnel
            || !string.Equals(cached.Destination.NodeId, r.NodeId, StringComparison.Ordinal) || !string.Equals(cached.NodeAddress, nodeAddress, StringComparison.Ordinal))
        {
            var built = new RouteDestination
            {
                ReplicaId = r.Id,
                NodeId = r.NodeId!,
                // Over a tunnel the agent connects to the replica on its own loopback.
                Address = tunnel ? $"http://127.0.0.1:{r.HostPort}" : $"http://{FormatHost(nodeAddress)}:{r.HostPort}",
                Via = tunnel ? RouteVia.Tunnel : RouteVia.Direct,
                Waiting = waiting,
            };
            _routeDestinations[r.Id] = new CachedDestination(r.HostPort, tunnel, nodeAddress, built, version);
            return built;
        }
        if (cached.Destination.Waiting != waiting) cached.Destination = cached.Destination with { Waiting = waiting };
        cached.Version = version;
        return cached.Destination;
    }

    private readonly Dictionary<string, CachedDestination> _routeDestinations = new(StringComparer.Ordinal);

    private sealed class CachedDestination(int? hostPort, bool tunnel, string nodeAddress, RouteDestination destination, long version)
    {
        public int? HostPort { get; } = hostPort;
        public bool Tunnel { get; } = tunnel;
        public string NodeAddress { get; } = nodeAddress;
        public RouteDestination Destination { get; set; } = destination;
        /// <summary>The last table it was in.</summary>
        public long Version { get; set; } = version;
    }

    public async Task<RouteTable> BuildRouteTableAsync(long version, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            var perCluster = new Dictionary<string, List<RouteDestination>>(StringComparer.Ordinal);
            var routed = 0;
            List<string>? draining = null;
            foreach (var r in _replicas.Values)
            {
                if (!IsRoutable(r))
                {
                    // Edges let requests in flight to a draining replica finish; to any other that left, they cut them.
                    if (r.DrainingSince is not null && IsServing(r)) (draining ??= []).Add(r.Id);
                    continue;
                }
                if (!perCluster.TryGetValue(r.ClusterId, out var list)) perCluster[r.ClusterId] = list = [];
                list.Add(DestinationLocked(r, version));
                routed++;
            }
            if (_routeDestinations.Count > 2 * routed + 1024)
            {
                foreach (var id in _routeDestinations.Where(kv => kv.Value.Version != version).Select(kv => kv.Key).ToList()) _routeDestinations.Remove(id);
            }
            var clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal);
            foreach (var c in _clustersById.Values)
            {
                var destinations = perCluster.GetValueOrDefault(c.Id) ?? [];
                destinations.Sort((a, b) => string.CompareOrdinal(a.ReplicaId, b.ReplicaId));
                clusters[c.Name] = new ClusterRoute
                {
                    Cluster = c.Name,
                    Project = c.Project,
                    Public = c.Spec.Public,
                    Balancing = c.Spec.Routing,
                    QueueTimeoutMs = c.Spec.QueueTimeoutSeconds * 1000,
                    MaxHeld = c.Spec.MaxHeld,
                    FirstByteTimeoutMs = c.Spec.FirstByteTimeoutSeconds * 1000,
                    Models = c.Spec.Models ?? ReportedModels(destinations.Select(d => d.ReplicaId)),
                    Price = c.Spec.Price, GpuCount = c.Spec.GpuCount,
                    Unavailable = c.Rollout.Failure is { } failure ? $"the cluster failed: {ExitOutput.Strip(failure)}; update it to try again" : null,
                    Destinations = [.. destinations],
                };
            }
            // A node this server has not heard from since it started is unknown, not lost: edges keep its streams.
            var lost = _liveness
                .Where(kv => kv.Value.Session is null && kv.Value.DisconnectedSince is not null && _nodes[kv.Key].State == NodeState.Disconnected
                    && !_awaitingReconnect.Contains(kv.Key))
                .Select(kv => kv.Key)
                .Order(StringComparer.Ordinal)
                .ToArray();
            draining?.Sort(StringComparer.Ordinal);
            return new RouteTable { Version = version, Clusters = clusters, LostNodes = lost, DrainingReplicas = draining is null ? [] : [.. draining] };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The union of the model ids the cluster's routed replicas list, sorted; null when none listed any.</summary>
    private string[]? ReportedModels(IEnumerable<string> replicaIds)
    {
        SortedSet<string>? models = null;
        foreach (var id in replicaIds)
        {
            if (_replicaModels.TryGetValue(id, out var listed)) (models ??= new(StringComparer.Ordinal)).UnionWith(listed);
        }
        return models is null ? null : [.. models];
    }

    /// <summary>The models a cluster serves on the <c>/v1</c> facade: declared, else what its routable replicas list.</summary>
    private string[] ModelsOf(ClusterRecord cluster, IEnumerable<ReplicaView> replicas) =>
        cluster.Spec.Models ?? ReportedModels(replicas.Where(r => r.Routable).Select(r => r.Replica.Id)) ?? [];

    private static string FormatHost(string address) =>
        address.Contains(':', StringComparison.Ordinal) && !address.StartsWith('[') ? $"[{address}]" : address;

    public void Dispose() => _gate.Dispose();
}

/// <summary>What one reconcile pass did.</summary>
public readonly record struct ReconcileResult(int Created, int Removed, int Placed, int Pending);

/// <summary>
/// A cluster with its replicas, read under the state lock, and how many replicas run its current
/// generation, still have to be replaced (older generation, drained node, crash loop), or drain.
/// </summary>
public sealed record ClusterView(ClusterRecord Cluster, IReadOnlyList<ReplicaView> Replicas, int UpdatedReplicas = 0, int OutdatedReplicas = 0, int DrainingReplicas = 0)
{
    /// <summary>The autoscaler's last decision; null with autoscaling off or before its first pass.</summary>
    public AutoscaleStatus? Autoscale { get; init; }
    /// <summary>Cold starts of the cluster's recent replicas; null when none is known.</summary>
    public ColdStartDto? ColdStart { get; init; }
    /// <summary>The models the cluster serves on the gateway's <c>/v1</c> facade: declared, else what its routable replicas list.</summary>
    public string[] Models { get; init; } = [];
}

/// <summary>A replica with the node it is on and its last reported load.</summary>
public sealed record ReplicaView(ReplicaRecord Replica, NodeRecord? Node, ReplicaLoad? Load, bool Routable);

/// <summary>A node with how much of it is used, and how edges reach it.</summary>
public sealed record NodeView(NodeRecord Node, int Replicas, int FreeGpus, NodeReliability Reliability)
{
    /// <summary>Reached over its tunnels (false: direct mode).</summary>
    public bool Tunnel { get; init; }
    /// <summary>Why edges do not connect to its address; null when they may, or it uses tunnels.</summary>
    public string? AddressRefused { get; init; }
    /// <summary>When this server marked the node disconnected (its socket closed, or it missed its heartbeats); null while connected or offline.</summary>
    public DateTimeOffset? DisconnectedSince { get; init; }
}
