namespace Shoal.Edge;

/// <summary>
/// Wraps the response body of a forwarded request: a write or flush to the client that does not
/// complete within <see cref="EdgeOptions.ClientStallTimeout"/> aborts the client's connection,
/// which ends the forwarding and frees the replica. Kestrel's minimum response data rate cannot do
/// this alone: it credits every byte already buffered, so a stream that filled the socket buffers
/// would keep its slot for hours. Writes that complete at once (the usual case) cost nothing extra.
/// </summary>
internal sealed class ClientStallGuard : Stream
{
    private readonly Stream _inner;
    private readonly HttpContext _context;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;

    public ClientStallGuard(Stream inner, HttpContext context, TimeSpan timeout, TimeProvider time)
    {
        _inner = inner;
        _context = context;
        _timeout = timeout;
        _time = time;
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var write = _inner.WriteAsync(buffer, cancellationToken);
        return write.IsCompletedSuccessfully ? write : GuardAsync(write.AsTask());
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken)
    {
        var flush = _inner.FlushAsync(cancellationToken);
        return flush.IsCompletedSuccessfully ? flush : GuardAsync(flush).AsTask();
    }

    private async ValueTask GuardAsync(Task pending)
    {
        try
        {
            await pending.WaitAsync(_timeout, _time);
        }
        catch (TimeoutException)
        {
            _context.Abort();
            throw new IOException($"the client read nothing for {_timeout.TotalSeconds} s; connection closed");
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => _inner.Write(buffer, offset, count);
    public override void Write(ReadOnlySpan<byte> buffer) => _inner.Write(buffer);
    public override void Flush() => _inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
