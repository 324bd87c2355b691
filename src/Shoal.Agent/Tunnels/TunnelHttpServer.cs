using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Yarp.ReverseProxy.Forwarder;

namespace Shoal.Agent.Tunnels;

/// <summary>
/// The agent's end of HTTP/2 tunnels: Kestrel serving HTTP/2 on claimed tunnels (a transport of its
/// own, fed the tunnel streams), each request forwarded by YARP's forwarder over HTTP/1.1 to the
/// replica port the edge named when it claimed the tunnel. One tunnel carries every concurrent
/// request of one edge to one replica (multiplexed); a replica that cannot be reached answers 502,
/// which the edge retries on another replica.
/// </summary>
public sealed class TunnelHttpServer : IAsyncDisposable
{
    private readonly TunnelListener _listener = new();
    private readonly WebApplication _app;
    private readonly HttpMessageInvoker _client;
    private readonly Lazy<Task> _started;

    /// <summary>Builds the server; it starts with the first tunnel and takes connections only through <see cref="ServeAsync(Stream, int)"/> and <see cref="ServeAsync(Socket, int)"/>.</summary>
    public TunnelHttpServer(TunnelOptions options, ILoggerFactory loggers)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggers);
        builder.Services.AddHttpForwarder();
        builder.Services.AddSingleton<IConnectionListenerFactory>(_listener);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // The edge enforces sizes, rates and timeouts towards its clients; this hop adds none.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromMinutes(10);
            kestrel.Listen(new TunnelEndPoint(), listen => listen.Protocols = HttpProtocols.Http2);
        });
        _app = builder.Build();
        var forwarder = _app.Services.GetRequiredService<IHttpForwarder>();
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
            ConnectTimeout = options.ReplicaConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        });
        var config = new ForwarderRequestConfig
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            // The edge times out silent replicas itself; a long quiet stream must not be cut here first.
            ActivityTimeout = TimeSpan.FromHours(24),
        };
        var listener = _listener;
        var client = _client;
        _app.Run(async context =>
        {
            if (!listener.TryGetPort(context.Connection.Id, out var port))
            {
                context.Response.StatusCode = StatusCodes.Status502BadGateway;
                return;
            }
            // HttpTransformer.Empty: a transparent hop, the edge already shaped the request (Host included).
            await forwarder.SendAsync(context, $"http://127.0.0.1:{port}", client, config, HttpTransformer.Empty);
        });
        _started = new Lazy<Task>(() => _app.StartAsync(), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>Serves HTTP/2 on <paramref name="tunnel"/> for replica <paramref name="port"/>; completes when the connection ends.</summary>
    public async Task ServeAsync(Stream tunnel, int port)
    {
        await _started.Value;
        await _listener.Offer(tunnel, port);
    }

    /// <summary>
    /// Serves HTTP/2 on a plain TCP tunnel's <paramref name="socket"/> with Kestrel's own socket
    /// connection (its pipes read and write the socket directly, without a stream in between);
    /// completes when the connection ends.
    /// </summary>
    public async Task ServeAsync(Socket socket, int port)
    {
        await _started.Value;
        await _listener.Offer(socket, port);
    }

    public async ValueTask DisposeAsync()
    {
        if (_started.IsValueCreated)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await _started.Value;
                await _app.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // Connections still open after the timeout were aborted.
            }
        }
        await _app.DisposeAsync();
        _client.Dispose();
    }

    /// <summary>The endpoint Kestrel "listens" on: tunnels handed over by the tunnel pools.</summary>
    private sealed class TunnelEndPoint : EndPoint
    {
        public override string ToString() => "shoal-tunnels";
    }

    /// <summary>Kestrel's transport for tunnels: accepts what <see cref="Offer(Stream, int)"/> and <see cref="Offer(Socket, int)"/> queue.</summary>
    private sealed class TunnelListener : IConnectionListenerFactory, IConnectionListenerFactorySelector, IConnectionListener
    {
        private readonly Channel<ConnectionContext> _queue = Channel.CreateUnbounded<ConnectionContext>();
        // Kestrel's socket connections, as its socket transport makes them, for plain TCP tunnels.
        private readonly SocketConnectionContextFactory _sockets = new(new SocketConnectionFactoryOptions(), NullLogger.Instance);
        private readonly ConcurrentDictionary<string, int> _ports = new(StringComparer.Ordinal);
        private long _ids;

        public EndPoint EndPoint { get; private set; } = new TunnelEndPoint();

        public bool CanBind(EndPoint endpoint) => endpoint is TunnelEndPoint;

        public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
        {
            EndPoint = endpoint;
            return ValueTask.FromResult<IConnectionListener>(this);
        }

        public bool TryGetPort(string connectionId, out int port) => _ports.TryGetValue(connectionId, out port);

        public Task Offer(Stream stream, int port)
        {
            var id = NextId();
            _ports[id] = port;
            var connection = new TunnelConnection(id, stream, () => _ports.TryRemove(id, out _));
            return Enqueue(connection, connection.Closed);
        }

        public Task Offer(Socket socket, int port)
        {
            var id = NextId();
            _ports[id] = port;
            var connection = new SocketTunnelConnection(id, _sockets.Create(socket), () => _ports.TryRemove(id, out _));
            return Enqueue(connection, connection.Closed);
        }

        private string NextId() => "tunnel-" + Interlocked.Increment(ref _ids).ToString(System.Globalization.CultureInfo.InvariantCulture);

        private Task Enqueue(ConnectionContext connection, Task closed)
        {
            if (!_queue.Writer.TryWrite(connection))
            {
                // Stopped: the connection is not served.
                _ports.TryRemove(connection.ConnectionId, out _);
                return connection.DisposeAsync().AsTask();
            }
            return closed;
        }

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await _queue.Reader.ReadAsync(cancellationToken);
            }
            catch (Exception e) when (e is ChannelClosedException or OperationCanceledException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _queue.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            while (_queue.Reader.TryRead(out var pending))
            {
                // Never accepted: ended here, which also completes what the tunnel pool waits on.
                pending.Abort();
                await pending.DisposeAsync();
            }
            _sockets.Dispose();
        }
    }

    /// <summary>
    /// A plain TCP tunnel as Kestrel's own socket connection, with what the tunnel pool needs on top:
    /// the replica port's mapping dropped and <see cref="Closed"/> completed when Kestrel is done with it.
    /// </summary>
    private sealed class SocketTunnelConnection(string id, ConnectionContext inner, Action onClosed) : ConnectionContext
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _disposed;

        public Task Closed => _done.Task;

        public override string ConnectionId { get; set; } = id;
        public override IFeatureCollection Features => inner.Features;
        public override IDictionary<object, object?> Items { get => inner.Items; set => inner.Items = value; }
        public override IDuplexPipe Transport { get => inner.Transport; set => inner.Transport = value; }
        public override CancellationToken ConnectionClosed { get => inner.ConnectionClosed; set => inner.ConnectionClosed = value; }
        public override EndPoint? LocalEndPoint { get => inner.LocalEndPoint; set => inner.LocalEndPoint = value; }
        public override EndPoint? RemoteEndPoint { get => inner.RemoteEndPoint; set => inner.RemoteEndPoint = value; }

        public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

        public override async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                onClosed();
                try
                {
                    await inner.DisposeAsync();
                }
                finally
                {
                    _done.TrySetResult();
                }
            }
            await base.DisposeAsync();
        }
    }

    /// <summary>One tunnel as a Kestrel connection: the stream's bytes as its pipes.</summary>
    private sealed class TunnelConnection : ConnectionContext
    {
        private readonly Stream _stream;
        private readonly Action _onClosed;
        private readonly CancellationTokenSource _closed = new();
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _disposed;

        public TunnelConnection(string id, Stream stream, Action onClosed)
        {
            ConnectionId = id;
            _stream = stream;
            _onClosed = onClosed;
            Transport = new Pipe(
                PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
                PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
        }

        public Task Closed => _done.Task;

        public override string ConnectionId { get; set; }
        public override IFeatureCollection Features { get; } = new FeatureCollection();
        public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
        public override IDuplexPipe Transport { get; set; }
        public override CancellationToken ConnectionClosed => _closed.Token;

        public override void Abort(ConnectionAbortedException abortReason)
        {
            try
            {
                _closed.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Already disposed.
            }
            _stream.Dispose();
            _ = DisposeAsync().AsTask();
        }

        public override async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                await base.DisposeAsync();
                return;
            }
            _onClosed();
            try
            {
                await Transport.Input.CompleteAsync();
                await Transport.Output.CompleteAsync();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The stream is already broken.
            }
            try
            {
                await _stream.DisposeAsync();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                // Already broken.
            }
            _closed.Dispose();
            _done.TrySetResult();
            await base.DisposeAsync();
        }

        private sealed class Pipe(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input { get; } = input;
            public PipeWriter Output { get; } = output;
        }
    }
}
