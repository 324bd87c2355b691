using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Agents;

/// <summary>
/// One agent's WebSocket: a reader that parses bounded, typed messages and a single writer
/// fed by a queue, so sends never interleave. Assignment sets are sent newest-only.
/// </summary>
internal sealed class AgentSession(WebSocket socket, string nodeId)
{
    private readonly Channel<AgentMessage> _outbox = Channel.CreateUnbounded<AgentMessage>(new UnboundedChannelOptions { SingleReader = true });
    private long _lastSentRevision = -1;

    public string NodeId { get; } = nodeId;

    public WebSocket Socket { get; } = socket;

    /// <summary>Log streams this session is serving.</summary>
    public LogStreams Logs { get; } = new();

    // Until the welcome is queued, other messages wait here: the agent expects its welcome first, and a
    // broadcast (edges, assignment pushes) can reach a session between its registration and its welcome.
    private readonly Lock _welcomeLock = new();
    private List<AgentMessage>? _beforeWelcome = [];

    /// <summary>Queues a message; before <see cref="Welcome"/>, it is held and sent right after the welcome.</summary>
    public void Enqueue(AgentMessage message)
    {
        lock (_welcomeLock)
        {
            if (_beforeWelcome is not null)
            {
                _beforeWelcome.Add(message);
                return;
            }
        }
        _outbox.Writer.TryWrite(message);
    }

    /// <summary>Queues the welcome, then whatever was queued for this session before it.</summary>
    public void Welcome(WelcomeMessage welcome)
    {
        lock (_welcomeLock)
        {
            _outbox.Writer.TryWrite(welcome);
            foreach (var held in _beforeWelcome ?? []) _outbox.Writer.TryWrite(held);
            _beforeWelcome = null;
        }
    }

    public void Complete() => _outbox.Writer.TryComplete();

    /// <summary>Sends queued messages until the queue is completed or the socket fails.</summary>
    public async Task RunWriterAsync(CancellationToken ct)
    {
        await foreach (var message in _outbox.Reader.ReadAllAsync(ct))
        {
            if (message is AssignmentsMessage a)
            {
                // Two pushes built concurrently may be queued out of order: never send an older set.
                if (a.Revision < _lastSentRevision) continue;
                _lastSentRevision = a.Revision;
            }
            var bytes = JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage);
            await Socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, ct);
        }
    }

    /// <summary>Reads one whole text message, enforcing the size limit.</summary>
    public async Task<ReadResult> ReadAsync(byte[] buffer, MemoryStream assembled, CancellationToken ct)
    {
        assembled.SetLength(0);
        while (true)
        {
            var result = await Socket.ReceiveAsync(buffer.AsMemory(), ct);
            if (result.MessageType == WebSocketMessageType.Close) return ReadResult.Closed();
            assembled.Write(buffer, 0, result.Count);
            if (assembled.Length > AgentProtocol.MaxMessageBytes)
            {
                return ReadResult.Violation($"message larger than {AgentProtocol.MaxMessageBytes} bytes");
            }
            if (!result.EndOfMessage) continue;
            if (result.MessageType != WebSocketMessageType.Text) return ReadResult.Violation("only JSON text messages are accepted");
            try
            {
                var message = JsonSerializer.Deserialize(assembled.GetBuffer().AsSpan(0, (int)assembled.Length), ShoalJsonContext.Default.AgentMessage);
                return message is null ? ReadResult.Violation("empty message") : ReadResult.Of(message);
            }
            catch (JsonException e)
            {
                return ReadResult.Violation("malformed message: " + e.Message);
            }
            catch (NotSupportedException e)
            {
                return ReadResult.Violation("malformed message: " + e.Message);
            }
        }
    }

    public async Task CloseAsync(WebSocketCloseStatus status, string description)
    {
        Complete();
        try
        {
            if (Socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await Socket.CloseOutputAsync(status, description.Length > 120 ? description[..120] : description, timeout.Token);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    /// <summary>A message, a clean close, or a protocol violation with its reason.</summary>
    public readonly record struct ReadResult(AgentMessage? Message, string? ViolationReason, bool IsClosed)
    {
        public static ReadResult Of(AgentMessage m) => new(m, null, false);
        public static ReadResult Closed() => new(null, null, true);
        public static ReadResult Violation(string reason) => new(null, reason, false);
    }
}
