using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Server;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>A real control plane on 127.0.0.1 with a SQLite store in a temp dir.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly TempDirectory _dir;

    private TestServer(ShoalServer server, TempDirectory dir, FakeTimeProvider? time, string dataDir)
    {
        Server = server;
        _dir = dir;
        Time = time;
        Http = new HttpClient { BaseAddress = server.ApiAddress };
        OperatorKey = File.ReadAllText(server.OperatorKeyFile ?? Path.Combine(dataDir, "operator.key")).Trim();
        Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", OperatorKey);
    }

    /// <summary>The bootstrap operator key; <see cref="Http"/> sends it with every call.</summary>
    public string OperatorKey { get; }

    /// <summary>A client for the API with <paramref name="key"/> (or none).</summary>
    public HttpClient Client(string? key)
    {
        var http = new HttpClient { BaseAddress = Server.ApiAddress };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    /// <summary>Creates an API key with the operator key; returns the key.</summary>
    public async Task<string> CreateKeyAsync(string role, string? project = "default", string name = "test", long? ttlSeconds = null)
    {
        var response = await Http.PostAsJsonAsync("/v1/keys",
            new CreateApiKeyRequest { Name = name, Role = role, Project = role == ApiKeyRoles.Operator ? null : project, TtlSeconds = ttlSeconds },
            ShoalJsonContext.Default.CreateApiKeyRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!.Key;
    }

    public ShoalServer Server { get; }
    public FakeTimeProvider? Time { get; }
    public HttpClient Http { get; }

    public static async Task<TestServer> StartAsync(FakeTimeProvider? time = null, Action<ServerOptions>? configure = null)
    {
        var dir = new TempDirectory("shoal-cp");
        var options = new ServerOptions
        {
            Listen = "127.0.0.1:0",
            EdgeListen = "127.0.0.1:0",
            DataDir = dir.Path,
            LogLevel = LogLevel.Warning,
            // Test agents run here, on simulated GPUs.
            AllowLoopbackNodes = true,
            AllowSimulatedGpus = true,
        };
        configure?.Invoke(options);
        var server = await ShoalServer.StartAsync(options, time, l => l.SetMinimumLevel(LogLevel.Warning));
        return new TestServer(server, dir, time, options.DataDir);
    }

    public Task<string> CreateTokenAsync(int uses = 1, int ttlSeconds = 3600) =>
        CreateTokenAsync(new CreateTokenRequest { Uses = uses, TtlSeconds = ttlSeconds });

    /// <summary>Creates a provisioning token with this policy; returns the token.</summary>
    public async Task<string> CreateTokenAsync(CreateTokenRequest request)
    {
        var response = await Http.PostAsJsonAsync("/v1/tokens", request, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        var dto = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto);
        return dto!.Token;
    }

    public Uri AgentUri => new(new Uri(Server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal)), AgentProtocol.ConnectPath);

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        _dir.Dispose();
    }
}

/// <summary>Helpers for tests that start a <see cref="ShoalServer"/> themselves.</summary>
public static class ShoalServerTestExtensions
{
    /// <summary>An API client that sends the server's bootstrap operator key (from its data dir).</summary>
    public static HttpClient ApiClient(this ShoalServer server)
    {
        var dataDir = server.Services.GetRequiredService<ServerOptions>().DataDir;
        var key = File.ReadAllText(Path.Combine(dataDir, "operator.key")).Trim();
        var http = new HttpClient { BaseAddress = server.ApiAddress };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        return http;
    }
}

/// <summary>A protocol peer playing an agent over a real WebSocket, for testing the gateway.</summary>
public sealed class WireAgent : IAsyncDisposable
{
    private readonly byte[] _buffer = new byte[1 << 20];

    public WireAgent(ClientWebSocket socket) => Socket = socket;

    public ClientWebSocket Socket { get; }

    public static async Task<(WireAgent? Agent, int Status)> ConnectAsync(Uri uri, Action<ClientWebSocketOptions> headers)
    {
        var socket = new ClientWebSocket();
        headers(socket.Options);
        socket.Options.CollectHttpResponseDetails = true;
        try
        {
            await socket.ConnectAsync(uri, CancellationToken.None);
            return (new WireAgent(socket), 101);
        }
        catch (WebSocketException)
        {
            var status = (int)socket.HttpStatusCode;
            socket.Dispose();
            return (null, status);
        }
    }

    public static Task<(WireAgent? Agent, int Status)> RegisterAsync(Uri uri, string token, string name = "test-node") =>
        ConnectAsync(uri, o =>
        {
            o.SetRequestHeader(AgentProtocol.ProvisioningTokenHeader, token);
            o.SetRequestHeader(AgentProtocol.NodeNameHeader, name);
        });

    public static HelloMessage Hello(string name, params (string Type, int Count)[] gpus)
    {
        var list = new List<GpuInfo>();
        foreach (var (type, count) in gpus)
        {
            for (var i = 0; i < count; i++)
            {
                list.Add(new GpuInfo { Index = list.Count, Uuid = $"GPU-{name}-{list.Count}", Name = type, Type = type, MemoryMiB = 24576, Simulated = true });
            }
        }
        return new HelloMessage { NodeName = name, Hardware = new NodeHardware { Gpus = [.. list], CpuCores = 8, MemoryMiB = 32768 }, Runtimes = ["process"] };
    }

    public Task SendAsync(AgentMessage message) =>
        SendRawAsync(JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage));

    public Task SendRawAsync(byte[] bytes) =>
        Socket.SendAsync(bytes, WebSocketMessageType.Text, true, CancellationToken.None);

    public Task SendTextAsync(string text) => SendRawAsync(Encoding.UTF8.GetBytes(text));

    /// <summary>Receives the next message, or null when the server closed the socket.</summary>
    public async Task<AgentMessage?> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var count = 0;
        while (true)
        {
            var result = await Socket.ReceiveAsync(_buffer.AsMemory(count), cts.Token);
            if (result.MessageType == WebSocketMessageType.Close) return null;
            count += result.Count;
            if (result.EndOfMessage) break;
        }
        return JsonSerializer.Deserialize(_buffer.AsSpan(0, count), ShoalJsonContext.Default.AgentMessage);
    }

    /// <summary>Receives until a message of type T arrives.</summary>
    public async Task<T> ReceiveAsync<T>(TimeSpan? timeout = null) where T : AgentMessage
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var m = await ReceiveAsync(timeout) ?? throw new InvalidOperationException($"socket closed while waiting for {typeof(T).Name}");
            if (m is T t) return t;
            cts.Token.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Reads until the server closes; returns the close status it sent.</summary>
    public async Task<WebSocketCloseStatus?> WaitForCloseAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                var result = await Socket.ReceiveAsync(_buffer.AsMemory(), cts.Token);
                if (result.MessageType == WebSocketMessageType.Close) return Socket.CloseStatus;
            }
        }
        catch (WebSocketException)
        {
            return Socket.CloseStatus;
        }
    }

    public ValueTask DisposeAsync()
    {
        Socket.Abort();
        Socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
