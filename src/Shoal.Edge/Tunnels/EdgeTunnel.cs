using System.Net.WebSockets;
using System.Text;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// One tunnel an agent opened to this edge. While idle it waits in its node's pool with a receive
/// pending, so a tunnel that closes is noticed at once. Claiming it sends <c>open {port}</c>; the
/// agent connects to that port on its loopback and answers <c>ok</c>; from then on the WebSocket is
/// a byte pipe carrying one HTTP/1.1 connection.
/// </summary>
internal sealed class EdgeTunnel
{
    private const int Idle = 0, Claimed = 1, Dead = 2;

    private readonly WebSocket _socket;
    private readonly byte[] _control = new byte[512];
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task<ValueWebSocketReceiveResult>? _pending;
    private int _state;

    public EdgeTunnel(WebSocket socket, string nodeId)
    {
        _socket = socket;
        NodeId = nodeId;
    }

    public string NodeId { get; }

    /// <summary>Completes when the tunnel is finished with; the request that carries it may then end.</summary>
    public Task Done => _done.Task;

    public bool IsIdle => Volatile.Read(ref _state) == Idle;

    /// <summary>Starts the pending receive; <paramref name="onDead"/> runs if the tunnel closes while idle.</summary>
    public void Watch(Action<EdgeTunnel> onDead)
    {
        _pending = _socket.ReceiveAsync(_control.AsMemory(), CancellationToken.None).AsTask();
        _pending.ContinueWith(static (_, state) =>
        {
            var (tunnel, dead) = ((EdgeTunnel, Action<EdgeTunnel>))state!;
            // Anything arriving on an idle tunnel (close, error, stray data) ends it.
            if (Interlocked.CompareExchange(ref tunnel._state, Dead, Idle) == Idle)
            {
                dead(tunnel);
                tunnel.Abort();
            }
        }, (this, onDead), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Takes the tunnel out of the idle state; false when it died or was taken first.</summary>
    public bool TryClaim() => Interlocked.CompareExchange(ref _state, Claimed, Idle) == Idle;

    /// <summary>Asks the agent to connect to <paramref name="port"/> and returns the byte stream once it has.</summary>
    public async Task<Stream> OpenAsync(int port, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            var request = Encoding.ASCII.GetBytes($"{Shoal.Contracts.EdgeProtocol.OpenVerb} {port}");
            await _socket.SendAsync(request, WebSocketMessageType.Text, endOfMessage: true, cts.Token);
            var reply = await _pending!.WaitAsync(cts.Token);
            if (reply.MessageType == WebSocketMessageType.Close)
            {
                throw new TunnelException("the tunnel closed before the replica connection opened");
            }
            var text = Encoding.UTF8.GetString(_control, 0, reply.Count);
            if (reply.MessageType != WebSocketMessageType.Text || !reply.EndOfMessage || text != Shoal.Contracts.EdgeProtocol.OpenOk)
            {
                throw new TunnelException($"the agent could not open port {port}: {text}");
            }
            return new TunnelStream(this, WebSocketStream.Create(_socket, WebSocketMessageType.Binary, ownsWebSocket: false));
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
        {
            Abort();
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            throw new TunnelException($"opening a tunnel to port {port} failed: {e.Message}", e);
        }
        catch
        {
            Abort();
            throw;
        }
    }

    /// <summary>Closes the tunnel without a handshake and lets its request end.</summary>
    public void Abort()
    {
        Volatile.Write(ref _state, Dead);
        _socket.Abort();
        _done.TrySetResult();
    }

    /// <summary>Closes the tunnel politely (the agent then closes its replica connection).</summary>
    public async Task CloseAsync()
    {
        Volatile.Write(ref _state, Dead);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            _socket.Abort();
        }
        _done.TrySetResult();
    }

    /// <summary>The tunnel as the HTTP client's connection stream; disposing it closes the tunnel.</summary>
    private sealed class TunnelStream(EdgeTunnel tunnel, Stream inner) : Stream
    {
        private int _disposed;

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                inner.Dispose();
                _ = tunnel.CloseAsync();
            }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                await inner.DisposeAsync();
                await tunnel.CloseAsync();
            }
            await base.DisposeAsync();
        }
    }
}

/// <summary>A tunnel could not carry a request; the edge treats it like a connect error (retryable).</summary>
public sealed class TunnelException : IOException
{
    public TunnelException(string message) : base(message) { }
    public TunnelException(string message, Exception inner) : base(message, inner) { }
}
