using System.Collections.Concurrent;
using Shoal.Agent.Replicas;
using Shoal.Contracts;

namespace Shoal.Agent.Connection;

/// <summary>
/// Serves the server's log requests on one session: each request streams the replica's output
/// back in bounded <see cref="LogsDataMessage"/> frames until its end, a cancel, or the session's end.
/// </summary>
internal sealed class LogStreamer(ReplicaManager replicas, Func<AgentMessage, CancellationToken, Task> send, CancellationToken sessionEnd) : IDisposable
{
    private const int MaxStreams = 64;
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _streams = new(StringComparer.Ordinal);

    /// <summary>Takes a logs message; false when <paramref name="message"/> is not one.</summary>
    public bool Handle(AgentMessage message)
    {
        switch (message)
        {
            case LogsRequestMessage request:
                Start(request);
                return true;
            case LogsCancelMessage cancel:
                if (_streams.TryRemove(cancel.RequestId, out var cts))
                {
                    cts.Cancel();
                }
                return true;
            default:
                return false;
        }
    }

    private void Start(LogsRequestMessage request)
    {
        if (_streams.Count >= MaxStreams)
        {
            _ = SendQuietlyAsync(new LogsDataMessage { RequestId = request.RequestId, End = true, Error = $"too many log streams open on this node (at most {MaxStreams})" }, sessionEnd);
            return;
        }
        var cts = CancellationTokenSource.CreateLinkedTokenSource(sessionEnd);
        if (!_streams.TryAdd(request.RequestId, cts))
        {
            cts.Dispose();
            return;
        }
        _ = Task.Run(() => StreamAsync(request, cts));
    }

    private async Task StreamAsync(LogsRequestMessage request, CancellationTokenSource cts)
    {
        var ct = cts.Token;
        string? error = null;
        try
        {
            await replicas.StreamLogsAsync(request.ReplicaId, request.Follow, request.Tail, async text =>
            {
                for (var i = 0; i < text.Length; i += LogsDataMessage.MaxChunkChars)
                {
                    var piece = text.Substring(i, Math.Min(LogsDataMessage.MaxChunkChars, text.Length - i));
                    await send(new LogsDataMessage { RequestId = request.RequestId, Data = piece }, ct);
                }
            }, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            error = ex.Message;
        }
        finally
        {
            _streams.TryRemove(request.RequestId, out _);
        }
        try
        {
            await SendQuietlyAsync(new LogsDataMessage { RequestId = request.RequestId, End = true, Error = error }, ct);
        }
        finally
        {
            cts.Dispose();
        }
    }

    private async Task SendQuietlyAsync(AgentMessage message, CancellationToken ct)
    {
        try
        {
            await send(message, ct);
        }
        catch (Exception ex) when (ex is OperationCanceledException or System.Net.WebSockets.WebSocketException or IOException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        foreach (var (id, cts) in _streams)
        {
            if (_streams.TryRemove(id, out _))
            {
                cts.Cancel();
            }
        }
    }
}
