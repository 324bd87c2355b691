
namespace Shoal.Agent.Replicas;

public sealed partial class ReplicaManager
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Starting replica {ReplicaId} of cluster {Cluster} ({Image})")]
    private partial void LogStarting(string replicaId, string cluster, string image);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping replica {ReplicaId}: no longer assigned")]
    private partial void LogStopping(string replicaId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Converging to revision {Revision}: {Started} to start, {Stopped} to stop, {Unchanged} unchanged")]
    private partial void LogConverged(long revision, int started, int stopped, int unchanged);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Removing containers no longer assigned failed")]
    private partial void LogOrphanSweepFailed(Exception exception);
}
