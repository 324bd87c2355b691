namespace Shoal.ControlPlane.State;

public sealed partial class ControlPlaneState
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Clusters} clusters, {Replicas} replicas and {Nodes} nodes from the {Store} store")]
    private static partial void LogLoaded(ILogger logger, int clusters, int replicas, int nodes, string store);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} created: {Image} on {Gpu}, {Replicas} replicas")]
    private static partial void LogClusterCreated(ILogger logger, string name, string image, string gpu, int replicas);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} scaled to {Replicas} replicas")]
    private static partial void LogClusterScaled(ILogger logger, string name, int replicas);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} deleted")]
    private static partial void LogClusterDeleted(ILogger logger, string name);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} registered as {Name} ({Approval}; labels: {Labels})")]
    private static partial void LogNodeRegistered(ILogger logger, string nodeId, string name, string approval, string[] labels);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} ({Name}) approved")]
    private static partial void LogNodeApproved(ILogger logger, string nodeId, string name);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId} ({Name}) is in direct mode and edges will not connect to it: {Reason}")]
    private static partial void LogAddressRefused(ILogger logger, string nodeId, string name, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} ({Name}) connected with {Gpus} GPUs")]
    private static partial void LogNodeConnected(ILogger logger, string nodeId, string name, int gpus);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId} disconnected: {Reason}")]
    private static partial void LogNodeDisconnected(ILogger logger, string nodeId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} disconnected: {Reason} (planned: not a drop)")]
    private static partial void LogNodeStopped(ILogger logger, string nodeId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId} ({Name}) is offline after its grace period; its replicas are replaced")]
    private static partial void LogNodeOffline(ILogger logger, string nodeId, string name);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reconciled: {Created} created, {Removed} removed, {Placed} placed, {Pending} pending")]
    private static partial void LogReconciled(ILogger logger, int created, int removed, int placed, int pending);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} updated to generation {Generation}: {Change}")]
    private static partial void LogClusterUpdated(ILogger logger, string name, long generation, string change);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster {Name} rolled back to generation {Generation}: {Reason}")]
    private static partial void LogRolledBack(ILogger logger, string name, long generation, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} ({Name}): {Action}")]
    private static partial void LogNodeScheduling(ILogger logger, string nodeId, string name, NodeSchedulingAction action);
}
