using Shoal.Contracts;
using Shoal.Core.Reconciliation;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

/// <summary>What an operator does to a node's scheduling.</summary>
public enum NodeSchedulingAction
{
    /// <summary>No new replicas on the node; those it runs stay.</summary>
    Cordon,
    /// <summary>New replicas may go to the node again (ends a drain too).</summary>
    Uncordon,
    /// <summary>Cordon, and move the node's replicas elsewhere the way an update does: a replacement ready first, then the old one drained.</summary>
    Drain,
}

/// <summary>Cordoning and draining nodes.</summary>
/// <summary>What <c>RemoveNodeAsync</c> did.</summary>
public enum NodeRemoval
{
    Removed,
    NotFound,
    /// <summary>The node is connected: stop its agent first.</summary>
    Connected,
}

public sealed partial class ControlPlaneState
{
    /// <summary>Cordons, uncordons or drains a node (by id, or by name when unique); null when there is no such node.</summary>
    public Task<NodeView?> SetNodeSchedulingAsync(string idOrName, NodeSchedulingAction action, CancellationToken ct) =>
        SetNodeSchedulingAsync(idOrName, action, null, ct);

    /// <inheritdoc cref="SetNodeSchedulingAsync(string, NodeSchedulingAction, CancellationToken)"/>
    /// <param name="actor">the API key that asked (<c>id (name)</c>), recorded in the events.</param>
    public async Task<NodeView?> SetNodeSchedulingAsync(string idOrName, NodeSchedulingAction action, string? actor, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        NodeRecord updated;
        await _gate.WaitAsync(ct);
        try
        {
            var node = FindNodeLocked(idOrName);
            if (node is null) return null;
            updated = action switch
            {
                NodeSchedulingAction.Cordon => node with { Cordoned = true },
                NodeSchedulingAction.Drain => node with { Cordoned = true, Draining = true },
                _ => node with { Cordoned = false, Draining = false },
            };
            updated = updated with { State = Reconciler.SchedulingState(updated) };
            var nodeReplicas = _replicas.Values.Where(r => r.NodeId == node.Id).ToList();
            if (updated != node)
            {
                var changes = new StoreChanges();
                changes.UpsertNodes.Add(updated);
                var (type, message) = action switch
                {
                    NodeSchedulingAction.Cordon => (ClusterEventTypes.Cordoned, $"node {node.Name} cordoned: no new replicas there; this one stays"),
                    NodeSchedulingAction.Drain => (ClusterEventTypes.Cordoned, $"node {node.Name} drained: the replica moves to another node (a replacement first, then it drains)"),
                    _ => (ClusterEventTypes.Uncordoned, $"node {node.Name} uncordoned: it takes new replicas again"),
                };
                foreach (var r in nodeReplicas)
                {
                    changes.AppendEvents.Add(NewEventLocked(r.ClusterId, now, type, message, r.Id, node.Id, actor));
                }
                await CommitLockedAsync(changes, ct);
                _nodes[node.Id] = updated;
                _dirtyNodes.Remove(node.Id);
            }
            LogNodeScheduling(_logger, node.Id, node.Name, action);
            return NodeViewOf(updated, nodeReplicas, ReliabilityLocked(node.Id, now));
        }
        finally
        {
            _gate.Release();
            ReconcileNeeded?.Invoke();
        }
    }

    /// <summary>
    /// Removes a node that is not connected (<c>shoal nodes rm</c>): its record and secret go, so its
    /// agent can no longer connect, and its replicas are placed again elsewhere.
    /// </summary>
    public async Task<(NodeRemoval Outcome, NodeRecord? Node)> RemoveNodeAsync(string idOrName, string? actor, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        NodeRecord? node;
        await _gate.WaitAsync(ct);
        try
        {
            node = FindNodeLocked(idOrName);
            if (node is null) return (NodeRemoval.NotFound, null);
            if (_liveness.TryGetValue(node.Id, out var live) && live.Session is not null) return (NodeRemoval.Connected, node);
            var replicas = _replicas.Values.Where(r => r.NodeId == node.Id).ToList();
            var changes = new StoreChanges();
            foreach (var r in replicas)
            {
                changes.DeleteReplicas.Add(r.Id);
                changes.AppendEvents.Add(NewEventLocked(r.ClusterId, now, ClusterEventTypes.Replaced,
                    $"node {node.Name} was removed: the replica is placed again elsewhere", r.Id, node.Id, actor));
            }
            changes.DeleteNodes.Add(node.Id);
            await CommitLockedAsync(changes, ct);
            foreach (var r in replicas) ForgetReplicaLocked(r.Id);
            _nodes.Remove(node.Id);
            _liveness.TryRemove(node.Id, out _);
            _dirtyNodes.Remove(node.Id);
            if (_awaitingReconnect.Remove(node.Id)) Volatile.Write(ref _awaitingReconnectCount, _awaitingReconnect.Count);
            RefreshCredentialsLocked();
        }
        finally
        {
            _gate.Release();
        }
        LogNodeRemoved(_logger, node.Id, node.Name, actor ?? "-");
        NodeCredentialsChanged?.Invoke();
        ReconcileNeeded?.Invoke();
        RoutesChanged?.Invoke();
        return (NodeRemoval.Removed, node);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} ({Name}) removed by {Actor}")]
    private static partial void LogNodeRemoved(ILogger logger, string nodeId, string name, string actor);

    /// <summary>Approves a node that waits for approval (by id, or by name when unique); null when there is no such node.</summary>
    public async Task<NodeView?> ApproveNodeAsync(string idOrName, CancellationToken ct)
    {
        NodeRecord updated;
        await _gate.WaitAsync(ct);
        try
        {
            var node = FindNodeLocked(idOrName);
            if (node is null) return null;
            updated = node with { Approved = true };
            if (updated != node)
            {
                var changes = new StoreChanges();
                changes.UpsertNodes.Add(updated);
                await CommitLockedAsync(changes, ct);
                _nodes[node.Id] = updated;
                _dirtyNodes.Remove(node.Id);
                LogNodeApproved(_logger, node.Id, node.Name);
            }
            return NodeViewOf(updated, _replicas.Values.Where(r => r.NodeId == node.Id), ReliabilityLocked(node.Id, _time.GetUtcNow()));
        }
        finally
        {
            _gate.Release();
            ReconcileNeeded?.Invoke();
        }
    }

    /// <summary>True when <paramref name="node"/> may receive the secrets of <paramref name="spec"/>: it has every label the cluster asks for.</summary>
    private static bool MayHoldSecrets(NodeRecord node, Shoal.Core.Clusters.ClusterSpec spec) =>
        !spec.HasSecrets || spec.RequiredNodeLabels.All(l => node.Labels.Contains(l, StringComparer.Ordinal));

    /// <summary>Whether a registered node already has <paramref name="name"/> (names identify nodes in the CLI).</summary>
    public async Task<bool> NodeNameTakenAsync(string name, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            return _nodes.Values.Any(n => n.Name == name);
        }
        finally
        {
            _gate.Release();
        }
    }

    private NodeRecord? FindNodeLocked(string idOrName)
    {
        if (_nodes.TryGetValue(idOrName, out var node)) return node;
        var byName = _nodes.Values.Where(n => n.Name == idOrName).ToList();
        return byName.Count == 1 ? byName[0] : null;
    }
}
