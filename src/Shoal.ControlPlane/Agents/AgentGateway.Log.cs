namespace Shoal.ControlPlane.Agents;

public sealed partial class AgentGateway
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "Agent connection from {Remote} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string remote, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Agent {NodeId} broke the protocol, connection closed: {Reason}")]
    private static partial void LogViolation(ILogger logger, string nodeId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Agent {NodeId} missed {Missed} heartbeats; closing its connection")]
    private static partial void LogStale(ILogger logger, string nodeId, int missed);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not push assignments to node {NodeId}")]
    private static partial void LogPushFailed(ILogger logger, string nodeId, Exception exception);
}
