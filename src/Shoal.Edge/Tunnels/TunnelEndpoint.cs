using System.Security.Cryptography;
using System.Text;
using Shoal.Contracts;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// <c>/_shoal/tunnel</c> on the edge: an agent opens a WebSocket with its node id and secret; a valid
/// one joins the node's tunnel pool and the request stays open for as long as the tunnel lives.
/// </summary>
public sealed partial class TunnelEndpoint
{
    private readonly TunnelRegistry _registry;
    private readonly INodeCredentialSource _credentials;
    private readonly ILogger<TunnelEndpoint> _logger;

    public TunnelEndpoint(TunnelRegistry registry, INodeCredentialSource credentials, ILogger<TunnelEndpoint> logger)
    {
        _registry = registry;
        _credentials = credentials;
        _logger = logger;
    }

    /// <summary>Interval of WebSocket pings on tunnels; a peer silent for <see cref="KeepAliveTimeout"/> is dropped.</summary>
    public static TimeSpan KeepAliveInterval { get; } = TimeSpan.FromSeconds(5);

    public static TimeSpan KeepAliveTimeout { get; } = TimeSpan.FromSeconds(10);

    public async Task HandleAsync(HttpContext context)
    {
        var nodeId = context.Request.Headers[AgentProtocol.NodeIdHeader].ToString();
        var secret = context.Request.Headers[AgentProtocol.NodeSecretHeader].ToString();
        if (!IsValid(nodeId, secret))
        {
            LogRefused(_logger, nodeId, context.Connection.RemoteIpAddress);
            await EdgeProxy.WriteErrorAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "tunnels need valid node credentials");
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await EdgeProxy.WriteErrorAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, "tunnels are WebSocket connections");
            return;
        }

        var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            KeepAliveInterval = KeepAliveInterval,
            KeepAliveTimeout = KeepAliveTimeout,
        });
        var tunnel = new EdgeTunnel(socket, nodeId);
        _registry.Add(tunnel);
        using (context.RequestAborted.Register(static t => ((EdgeTunnel)t!).Abort(), tunnel))
        {
            await tunnel.Done;
        }
        socket.Dispose();
    }

    private bool IsValid(string nodeId, string secret)
    {
        if (nodeId.Length is 0 or > 64 || secret.Length is 0 or > 256) return false;
        if (!_credentials.NodeCredentials.TryGetValue(nodeId, out var hash)) return false;
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(secret), digest);
        Span<byte> expected = stackalloc byte[32];
        return Convert.FromHexString(hash, expected, out _, out var written) == System.Buffers.OperationStatus.Done
            && written == 32
            && CryptographicOperations.FixedTimeEquals(digest, expected);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a tunnel for node '{NodeId}' from {Remote}: bad credentials")]
    private static partial void LogRefused(ILogger logger, string nodeId, System.Net.IPAddress? remote);
}
