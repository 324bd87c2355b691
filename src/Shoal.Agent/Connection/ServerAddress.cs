namespace Shoal.Agent.Connection;

/// <summary>Turns the configured control-plane address into the agent WebSocket URL.</summary>
public static class ServerAddress
{
    /// <summary>
    /// <c>http://h:p/base</c> → <c>ws://h:p/base/v1/agent/connect</c>; https → wss; ws and wss kept.
    /// </summary>
    /// <exception cref="AgentConfigurationException">Not an absolute http(s) or ws(s) URL.</exception>
    public static Uri ConnectUri(string server) =>
        Contracts.WebSocketAddress.Create(server, Contracts.AgentProtocol.ConnectPath)
            ?? throw new AgentConfigurationException($"invalid server address '{server}': expected an http, https, ws or wss URL such as http://127.0.0.1:7400");
}
