namespace Shoal.Agent.Connection;

/// <summary>Turns the configured control-plane address into the agent WebSocket URL.</summary>
public static class ServerAddress
{
    /// <summary>
    /// <c>http://h:p/base</c> → <c>ws://h:p/base/v1/agent/connect</c>; https → wss; ws and wss kept.
    /// </summary>
    /// <exception cref="AgentConfigurationException">Not an absolute http(s) or ws(s) URL.</exception>
    public static Uri ConnectUri(string server)
    {
        if (!Uri.TryCreate(server.Trim(), UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
        {
            throw new AgentConfigurationException($"invalid server address '{server}': expected a URL such as http://127.0.0.1:7400");
        }
        var scheme = uri.Scheme switch
        {
            "http" or "ws" => "ws",
            "https" or "wss" => "wss",
            _ => throw new AgentConfigurationException($"invalid server address '{server}': the scheme must be http, https, ws or wss"),
        };
        var builder = new UriBuilder(uri)
        {
            Scheme = scheme,
            Port = uri.IsDefaultPort ? -1 : uri.Port,
            Path = uri.AbsolutePath.TrimEnd('/') + Contracts.AgentProtocol.ConnectPath,
            Query = "",
            Fragment = "",
        };
        return builder.Uri;
    }
}
