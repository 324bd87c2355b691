using System.Collections.Concurrent;
using System.Threading.Channels;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Agents;

/// <summary>
/// The log streams open on one agent session: each request id has a bounded queue the session's
/// reader fills without ever waiting (a slow client must not stall the agent's heartbeats), so a
/// queue that overflows ends its stream with an error instead.
/// </summary>
internal sealed class LogStreams
{
    private const int MaxQueuedChunks = 512;
    private readonly ConcurrentDictionary<string, Channel<LogsDataMessage>> _streams = new(StringComparer.Ordinal);

    public ChannelReader<LogsDataMessage> Open(string requestId)
    {
        var channel = Channel.CreateBounded<LogsDataMessage>(new BoundedChannelOptions(MaxQueuedChunks)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _streams[requestId] = channel;
        return channel.Reader;
    }

    public void Close(string requestId) => _streams.TryRemove(requestId, out _);

    /// <summary>Hands a chunk to its stream; unknown ids (a stream already closed) are ignored.</summary>
    public void Deliver(LogsDataMessage data)
    {
        if (!_streams.TryGetValue(data.RequestId, out var channel))
        {
            return;
        }
        if (data.End)
        {
            channel.Writer.TryWrite(data);
            channel.Writer.TryComplete();
            _streams.TryRemove(data.RequestId, out _);
        }
        else if (!channel.Writer.TryWrite(data))
        {
            channel.Writer.TryComplete(new IOException("the client reads logs too slowly; stream ended"));
            _streams.TryRemove(data.RequestId, out _);
        }
    }

    /// <summary>The session ended: every open stream ends with an error.</summary>
    public void FailAll(string reason)
    {
        foreach (var (id, channel) in _streams)
        {
            channel.Writer.TryComplete(new IOException(reason));
            _streams.TryRemove(id, out _);
        }
    }
}
