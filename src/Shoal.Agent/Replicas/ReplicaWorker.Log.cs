
using Shoal.Contracts;

namespace Shoal.Agent.Replicas;

internal sealed partial class ReplicaWorker
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: {From} -> {To}")]
    private partial void LogStateChanged(string replicaId, ReplicaState from, ReplicaState to);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId} cannot run: {Reason}")]
    private partial void LogRejected(string replicaId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId} failed to start; retrying in {Delay}")]
    private partial void LogStartFailed(string replicaId, TimeSpan delay, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId} failed to start ({Reason}); retrying in {Delay}")]
    private partial void LogStartFailed(string replicaId, string reason, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId} exited with code {ExitCode}; restarting in {Delay}")]
    private partial void LogExited(string replicaId, int exitCode, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId} stays unhealthy ({Reason}): stopping it to start it again")]
    private partial void LogUnhealthyRestart(string replicaId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} stopped")]
    private partial void LogStopped(string replicaId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} left running for the next agent to re-adopt")]
    private partial void LogDetached(string replicaId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Supervision of replica {ReplicaId} failed")]
    private partial void LogLoopFailed(string replicaId, Exception exception);
}
