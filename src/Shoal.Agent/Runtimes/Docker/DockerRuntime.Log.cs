namespace Shoal.Agent.Runtimes.Docker;

public sealed partial class DockerRuntime
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: pulling {Image}")]
    private partial void LogPulling(string replicaId, string image);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: pulled {Image}")]
    private partial void LogPulled(string replicaId, string image);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} started as container {ContainerId} ({Image}) on port {Port}")]
    private partial void LogStarted(string replicaId, string containerId, string image, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: re-adopted running container {ContainerId} on port {Port}")]
    private partial void LogAdopted(string replicaId, string containerId, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "Removing container {ContainerId} of replica {ReplicaId}: no longer assigned to this node")]
    private partial void LogRemovingOrphan(string replicaId, string containerId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Waiting for container {ContainerId} failed ({Message}); waiting again")]
    internal static partial void LogWaitFailed(ILogger logger, string containerId, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not list the node's images: {Message}")]
    private partial void LogImagesRefreshFailed(string message);
}
