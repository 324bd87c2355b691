using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Connection;

/// <summary>A real Kestrel server on 127.0.0.1 that plays the control plane's side of the agent protocol.</summary>
internal sealed class FakeControlPlane : IAsyncDisposable
{
    public const string GoodToken = "shoal_pt_good";
    public const string NodeId = "node-abc";
    public const string NodeSecret = "shoal_ns_secret";
    private readonly WebApplication _app;
    private int _tokenUses;

    private FakeControlPlane(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public Channel<ServerSession> Sessions { get; } = Channel.CreateUnbounded<ServerSession>();

    /// <summary>The node id header of every upgrade attempt (headers are copied: Kestrel reuses them).</summary>
    public ConcurrentQueue<string> Attempts { get; } = new();

    public volatile bool RefuseEveryone;

    public static async Task<FakeControlPlane> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new FakeControlPlane(app);
        app.UseWebSockets();
        app.Map(AgentProtocol.ConnectPath, server.HandleAsync);
        await app.StartAsync();
        server.Url = app.Urls.First();
        return server;
    }

    public async Task<ServerSession> NextSessionAsync() =>
        await Sessions.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var token = context.Request.Headers[AgentProtocol.ProvisioningTokenHeader].ToString();
        var id = context.Request.Headers[AgentProtocol.NodeIdHeader].ToString();
        var secret = context.Request.Headers[AgentProtocol.NodeSecretHeader].ToString();
        Attempts.Enqueue(id);
        var allowed = !RefuseEveryone && (
            (token == GoodToken && Interlocked.Increment(ref _tokenUses) == 1)
            || (id == NodeId && secret == NodeSecret));
        if (!context.WebSockets.IsWebSocketRequest || !allowed)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }
        using var ws = await context.WebSockets.AcceptWebSocketAsync();
        var session = new ServerSession(ws, new HeaderDictionary(context.Request.Headers.ToDictionary(h => h.Key, h => h.Value)));
        await Sessions.Writer.WriteAsync(session);
        await session.ReadLoopAsync();
    }
}

/// <summary>One agent connection as the fake server sees it.</summary>
internal sealed class ServerSession(WebSocket ws, IHeaderDictionary headers)
{
    private readonly Channel<AgentMessage> _received = Channel.CreateUnbounded<AgentMessage>();
    private readonly TaskCompletionSource<WebSocketCloseStatus?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public IHeaderDictionary Headers { get; } = headers;

    public string Header(string name) => Headers[name].ToString();

    /// <summary>The close status the agent sent, once the connection ended.</summary>
    public Task<WebSocketCloseStatus?> Closed => _closed.Task;

    public async Task ReadLoopAsync()
    {
        var buffer = new byte[4 * 1024 * 1024];
        try
        {
            while (true)
            {
                var length = 0;
                WebSocketReceiveResult result;
                do
                {
                    result = await ws.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None) is var r
                        ? new WebSocketReceiveResult(r.Count, r.MessageType, r.EndOfMessage, ws.CloseStatus, ws.CloseStatusDescription)
                        : null!;
                    length += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _closed.TrySetResult(ws.CloseStatus);
                    if (ws.State == WebSocketState.CloseReceived)
                    {
                        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                    }
                    return;
                }
                _received.Writer.TryWrite(JsonSerializer.Deserialize(buffer.AsSpan(0, length), ShoalJsonContext.Default.AgentMessage)!);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
        {
            _closed.TrySetResult(null);
        }
        finally
        {
            _received.Writer.TryComplete();
        }
    }

    /// <summary>The next message of type T that matches, skipping others (heartbeats, mostly).</summary>
    public async Task<T> ReceiveAsync<T>(Func<T, bool>? match = null) where T : AgentMessage
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            var message = await _received.Reader.ReadAsync(timeout.Token);
            if (message is T t && (match is null || match(t)))
            {
                return t;
            }
        }
    }

    public Task SendAsync(AgentMessage message) =>
        ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage), WebSocketMessageType.Text, true, CancellationToken.None);

    public Task SendRawAsync(string text) =>
        ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    public Task CloseAsync() => ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
}
