using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Shoal.Contracts;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// One tunnel an agent opened to this edge: a connection on the edge's own listener that began with
/// the tunnel greeting. While idle it waits in its node's pool with a read pending, so a tunnel that
/// closes is noticed at once. Claiming it sends <c>open {port}</c>; the agent connects to that port
/// on its loopback and answers <c>ok</c>; from then on the connection is a plain byte pipe carrying
/// one HTTP/1.1 connection: no framing, nothing between the edge's HTTP client and the bytes but
/// the connection's own pipes.
/// </summary>
internal sealed class EdgeTunnel
{
    private const int Idle = 0, Claimed = 1, Dead = 2;

    private readonly ConnectionContext _connection;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task<ReadResult>? _pending;
    private int _state;

    public EdgeTunnel(ConnectionContext connection, string nodeId)
    {
        _connection = connection;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
        NodeId = nodeId;
    }

    public string NodeId { get; }

    /// <summary>Completes when the tunnel is finished with; the connection handler may then return.</summary>
    public Task Done => _done.Task;

    /// <summary>
    /// Completes when the tunnel can carry nothing new: finished with, or the agent closed its side
    /// (which may only be a half-close behind a response the client is still reading, so the
    /// connection itself stays until <see cref="Done"/>).
    /// </summary>
    public Task Ended => _ended.Task;

    /// <summary>The agent closed its side of the connection.</summary>
    public void MarkEnded() => _ended.TrySetResult();

    public bool IsIdle => Volatile.Read(ref _state) == Idle;

    /// <summary>Starts the pending read; <paramref name="onDead"/> runs if the tunnel closes while idle.</summary>
    public void Watch(Action<EdgeTunnel> onDead)
    {
        _pending = _input.ReadAsync(CancellationToken.None).AsTask();
        _pending.ContinueWith(static (_, state) =>
        {
            var (tunnel, dead) = ((EdgeTunnel, Action<EdgeTunnel>))state!;
            // Anything arriving on an idle tunnel (close, error, stray bytes) ends it.
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
            var flushed = await _output.WriteAsync(Encoding.ASCII.GetBytes($"{EdgeProtocol.OpenVerb} {port}\n"), cts.Token);
            if (flushed.IsCompleted) throw new TunnelException("the tunnel closed before the replica connection opened");
            var reply = await ReadReplyAsync(await _pending!.WaitAsync(cts.Token), cts.Token);
            if (reply != EdgeProtocol.OpenOk)
            {
                throw new TunnelException($"the agent could not open port {port}: {reply}");
            }
            return new TunnelStream(this);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            Abort();
            if (e is TunnelException) throw;
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            throw new TunnelException($"opening a tunnel to port {port} failed: {e.Message}", e);
        }
        catch
        {
            Abort();
            throw;
        }
    }

    /// <summary>Reads the agent's one-line answer to <c>open</c>, starting from the pending read's result.</summary>
    private async Task<string> ReadReplyAsync(ReadResult result, CancellationToken ct)
    {
        while (true)
        {
            var buffer = result.Buffer;
            if (buffer.PositionOf((byte)'\n') is { } end)
            {
                var line = Encoding.ASCII.GetString(buffer.Slice(0, end));
                _input.AdvanceTo(buffer.GetPosition(1, end));
                return line;
            }
            if (result.IsCompleted || result.IsCanceled)
            {
                throw new TunnelException("the tunnel closed before the replica connection opened");
            }
            if (buffer.Length >= EdgeProtocol.MaxTunnelLineBytes)
            {
                throw new TunnelException("the agent answered with an overlong line");
            }
            _input.AdvanceTo(buffer.Start, buffer.End);
            result = await _input.ReadAsync(ct);
        }
    }

    /// <summary>Closes the tunnel's connection without a goodbye and lets its handler end.</summary>
    public void Abort()
    {
        Volatile.Write(ref _state, Dead);
        _connection.Abort(new ConnectionAbortedException("tunnel closed"));
        _done.TrySetResult();
        _ended.TrySetResult();
    }

    /// <summary>Ends the tunnel politely: the connection closes, and the agent then closes its replica connection.</summary>
    public void Close()
    {
        Volatile.Write(ref _state, Dead);
        _done.TrySetResult();
        _ended.TrySetResult();
    }

    /// <summary>
    /// The tunnel as the HTTP client's connection stream, reading and writing the connection's pipes
    /// directly; disposing it closes the tunnel. Errors surface as <see cref="IOException"/>, as a
    /// socket's would (the HTTP client then treats them as a broken connection, not a cancellation).
    /// </summary>
    private sealed class TunnelStream(EdgeTunnel tunnel) : Stream
    {
        private readonly PipeReader _input = tunnel._input;
        private readonly PipeWriter _output = tunnel._output;
        private int _disposed;

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                while (true)
                {
                    var result = await _input.ReadAsync(cancellationToken);
                    var data = result.Buffer;
                    if (!data.IsEmpty)
                    {
                        var n = (int)Math.Min(data.Length, buffer.Length);
                        data.Slice(0, n).CopyTo(buffer.Span);
                        _input.AdvanceTo(data.GetPosition(n));
                        return n;
                    }
                    _input.AdvanceTo(data.End);
                    if (result.IsCompleted || result.IsCanceled) return 0;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw Broken(e);
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            FlushResult result;
            try
            {
                result = await _output.WriteAsync(buffer, cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw Broken(e);
            }
            if (result.IsCompleted) throw new IOException("the tunnel closed");
        }

        private static IOException Broken(Exception e) => e as IOException ?? new IOException("the tunnel closed: " + e.Message, e);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();
        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0) tunnel.Close();
            base.Dispose(disposing);
        }
    }
}

/// <summary>A tunnel could not carry a request; the edge treats it like a connect error (retryable).</summary>
public sealed class TunnelException : IOException
{
    public TunnelException(string message) : base(message) { }
    public TunnelException(string message, Exception inner) : base(message, inner) { }
}
