
namespace Shoal.Agent.Connection;

public sealed partial class AgentConnection
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Connected to {Uri} with {Credentials}")]
    private partial void LogConnected(Uri uri, string credentials);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot connect to {Uri}: {Error}; retrying in {Delay}")]
    private partial void LogConnectFailed(Uri uri, string error, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Error, Message = "THE CONTROL PLANE AT {Server} REFUSED THIS NODE'S CREDENTIALS (node {NodeId}, HTTP 401). It may be restoring; if the node was removed, delete {IdentityFile} and register again with a token. Retrying in {Delay}")]
    private partial void LogCredentialsRefused(string nodeId, string server, string identityFile, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Information, Message = "Registered as node {NodeId}; identity saved to {IdentityFile}")]
    private partial void LogRegistered(string nodeId, string identityFile);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Welcome names node {WelcomeNodeId}, but this node is {NodeId}")]
    private partial void LogNodeIdMismatch(string nodeId, string welcomeNodeId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The server broke the agent protocol ({Reason}); closing the connection with 1008")]
    private partial void LogProtocolViolation(string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lost the connection to the control plane: {Error}")]
    private partial void LogConnectionLost(string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "The server closed the connection ({Status} {Description})")]
    private partial void LogServerClosed(System.Net.WebSockets.WebSocketCloseStatus? status, string? description);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reconnecting in {Delay}")]
    private partial void LogReconnecting(TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Heartbeat failed: {Error}")]
    private partial void LogHeartbeatFailed(string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Said goodbye to the control plane (agent stopping)")]
    private partial void LogSaidGoodbye();

    [LoggerMessage(Level = LogLevel.Debug, Message = "The goodbye to the control plane was cut short: {Error}")]
    private partial void LogGoodbyeFailed(string error);
}
