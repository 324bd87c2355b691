using System.Buffers;

namespace Shoal.Edge;

/// <summary>A request body read into a pooled buffer so that it can be sent again to another replica.</summary>
internal sealed class BufferedBody : IDisposable
{
    private byte[]? _buffer;

    public BufferedBody(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    public int Length { get; }

    /// <summary>The body's bytes (until disposed).</summary>
    public ReadOnlySpan<byte> Span => (_buffer ?? throw new ObjectDisposedException(nameof(BufferedBody))).AsSpan(0, Length);

    /// <summary>A fresh read-only stream over the body, for one attempt.</summary>
    public Stream Open() => new MemoryStream(_buffer ?? throw new ObjectDisposedException(nameof(BufferedBody)), 0, Length, writable: false);

    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
    }
}

/// <summary>
/// A body that turned out larger than the replay buffer while it was being read: the bytes already
/// read, then the rest of the client's stream. Forwarded once, never replayed.
/// </summary>
internal sealed class PrefixedStream : Stream
{
    private readonly Stream _rest;
    private byte[]? _prefix;
    private readonly int _length;
    private int _position;

    public PrefixedStream(byte[] prefix, int length, Stream rest)
    {
        _prefix = prefix;
        _length = length;
        _rest = rest;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (TakePrefix(buffer) is var n and > 0) return n;
        return _rest.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (TakePrefix(buffer.Span) is var n and > 0) return ValueTask.FromResult(n);
        return _rest.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int TakePrefix(Span<byte> into)
    {
        var prefix = _prefix;
        if (prefix is null || into.IsEmpty) return 0;
        var n = Math.Min(into.Length, _length - _position);
        prefix.AsSpan(_position, n).CopyTo(into);
        _position += n;
        if (_position == _length) ReturnPrefix();
        return n;
    }

    private void ReturnPrefix()
    {
        var prefix = Interlocked.Exchange(ref _prefix, null);
        if (prefix is not null) ArrayPool<byte>.Shared.Return(prefix);
    }

    protected override void Dispose(bool disposing)
    {
        ReturnPrefix();
        base.Dispose(disposing);
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
