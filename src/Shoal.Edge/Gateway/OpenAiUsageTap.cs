using System.Buffers;
using System.Text.Json;

namespace Shoal.Edge.Gateway;

/// <summary>
/// Wraps the client's response body of an OpenAI operation answered 2xx and reads the token usage
/// as it passes, into the <see cref="GatewayCall"/>.
/// <list type="bullet">
/// <item>JSON (<c>application/json</c>): the top-level <c>usage</c> object's <c>prompt_tokens</c> and
/// <c>completion_tokens</c>, read incrementally with <see cref="Utf8JsonReader"/> across writes; bytes
/// pass through untouched; only an unfinished JSON token is kept between writes (up to <see cref="MaxPending"/>).</item>
/// <item>Server-sent events (<c>text/event-stream</c>): each <c>data:</c> event is parsed whole (a
/// partial event is held until its end, up to <see cref="MaxPending"/>, so events pass through whole);
/// every choice that carries text (<c>delta.content</c>, <c>delta.reasoning_content</c>,
/// <c>delta.tool_calls</c> or <c>text</c> non-empty) counts one completion token (vLLM and the simulator
/// send one token per chunk); a usage chunk (<c>choices</c> empty, <c>usage</c> set) gives the exact
/// figures, and is not passed on when the gateway asked for it (strip).</item>
/// </list>
/// A stream that outgrows the pending limit (not SSE as expected) is passed through untapped from then on.
/// </summary>
internal sealed class OpenAiUsageTap : Stream
{
    /// <summary>Most bytes held back between writes (an unfinished event or JSON token).</summary>
    public const int MaxPending = 64 * 1024;

    private readonly Stream _inner;
    private readonly GatewayCall _call;
    private readonly bool _sse;
    private readonly bool _strip;
    private byte[]? _pending;
    private int _pendingLength;
    private bool _bypass;
    // SSE: whether the unfinished line (since the last '\n') holds anything but '\r'.
    private bool _lineHasContent;
    // JSON state across writes.
    private JsonReaderState _jsonState;
    private bool _jsonDone;
    private int _usageState; // 0: not seen; 1: "usage" name read at depth 1; 2: inside the usage object
    private int _usageField; // 0: other; 1: prompt_tokens; 2: completion_tokens

    public OpenAiUsageTap(Stream inner, GatewayCall call, bool sse, bool strip)
    {
        _inner = inner;
        _call = call;
        _sse = sse;
        _strip = strip && sse;
        _jsonState = new JsonReaderState(new JsonReaderOptions { MaxDepth = 256 });
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_bypass) return _inner.WriteAsync(buffer, cancellationToken);
        if (!_sse)
        {
            ScanJson(buffer.Span);
            return _inner.WriteAsync(buffer, cancellationToken);
        }
        return WriteEventsAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public override void Flush() => _inner.Flush();

    /// <summary>The response ended: what is still held back (an event without its closing blank line) goes out as it came.</summary>
    public async ValueTask FinishAsync(CancellationToken cancellationToken)
    {
        if (_sse && _pendingLength > 0)
        {
            var pending = _pending!;
            var length = _pendingLength;
            _pendingLength = 0;
            Examine(pending.AsSpan(0, length));
            await _inner.WriteAsync(pending.AsMemory(0, length), cancellationToken);
        }
        ReturnPending();
    }

    // ---- Server-sent events ----

    private ValueTask WriteEventsAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        var span = buffer.Span;
        var keepFrom = 0;   // start of the bytes of buffer not yet passed on or dropped
        var eventStart = 0; // start of the current event within buffer (after the held bytes, if any)
        var lineStart = 0;
        List<ReadOnlyMemory<byte>>? parts = null;
        while (lineStart < span.Length)
        {
            var nl = span[lineStart..].IndexOf((byte)'\n');
            if (nl < 0)
            {
                if (ContainsContent(span[lineStart..])) _lineHasContent = true;
                break;
            }
            var lineEnd = lineStart + nl;
            var blank = !_lineHasContent && !ContainsContent(span[lineStart..lineEnd]);
            _lineHasContent = false;
            lineStart = lineEnd + 1;
            if (!blank) continue;
            // An event ends at lineStart: the held bytes, then buffer[eventStart..lineStart].
            if (_pendingLength > 0)
            {
                if (!Append(span[..lineStart])) return Bypass(buffer, ct);
                if (Examine(_pending.AsSpan(0, _pendingLength))) (parts ??= []).Add(CopyPending());
                _pendingLength = 0;
                keepFrom = eventStart = lineStart;
                continue;
            }
            if (!Examine(span[eventStart..lineStart]))
            {
                // Dropped: what came before it goes out, the event does not.
                if (eventStart > keepFrom) (parts ??= []).Add(buffer[keepFrom..eventStart]);
                keepFrom = lineStart;
            }
            eventStart = lineStart;
        }
        if (eventStart > keepFrom) (parts ??= []).Add(buffer[keepFrom..eventStart]);
        // The unfinished event is held until its end.
        if (eventStart < span.Length && !Append(span[eventStart..]))
        {
            (parts ??= []).Add(CopyPending());
            (parts ??= []).Add(buffer[eventStart..]);
            _pendingLength = 0;
            _bypass = true;
        }
        if (parts is null) return ValueTask.CompletedTask;
        if (parts.Count == 1) return _inner.WriteAsync(parts[0], ct);
        return WritePartsAsync(parts, ct);
    }

    /// <summary>An event longer than <see cref="MaxPending"/>: not the SSE expected; everything passes on untapped from now.</summary>
    private ValueTask Bypass(ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        _bypass = true;
        var parts = new List<ReadOnlyMemory<byte>> { CopyPending(), buffer };
        _pendingLength = 0;
        return WritePartsAsync(parts, ct);
    }

    private async ValueTask WritePartsAsync(List<ReadOnlyMemory<byte>> parts, CancellationToken ct)
    {
        foreach (var part in parts) await _inner.WriteAsync(part, ct);
    }

    private static bool ContainsContent(ReadOnlySpan<byte> line) => line.IndexOfAnyExcept((byte)'\r') >= 0;

    private byte[] CopyPending() => _pending.AsSpan(0, _pendingLength).ToArray();

    private bool Append(ReadOnlySpan<byte> bytes)
    {
        var needed = _pendingLength + bytes.Length;
        if (needed > MaxPending) return false;
        if (_pending is null || _pending.Length < needed)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, 1024));
            if (_pending is not null)
            {
                _pending.AsSpan(0, _pendingLength).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(_pending);
            }
            _pending = bigger;
        }
        bytes.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength = needed;
        return true;
    }

    /// <summary>Reads one whole event's figures; false when it is to be dropped (the usage chunk the client did not ask for).</summary>
    private bool Examine(ReadOnlySpan<byte> sse)
    {
        var keep = true;
        while (!sse.IsEmpty)
        {
            var nl = sse.IndexOf((byte)'\n');
            var line = nl < 0 ? sse : sse[..nl];
            sse = nl < 0 ? default : sse[(nl + 1)..];
            if (!line.IsEmpty && line[^1] == '\r') line = line[..^1];
            if (!line.StartsWith("data:"u8)) continue;
            var data = line[5..];
            if (!data.IsEmpty && data[0] == ' ') data = data[1..];
            if (data.IsEmpty || data[0] != '{') continue;
            if (ExamineChunk(data) && _strip) keep = false;
        }
        return keep;
    }

    /// <summary>Counts one chunk's delivered tokens or takes its usage; true when it is a usage-only chunk.</summary>
    private bool ExamineChunk(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        long prompt = -1, completion = -1;
        var choices = 0;
        var delivered = 0;
        var usage = false;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("choices"u8))
                {
                    reader.Read();
                    if (reader.TokenType != JsonTokenType.StartArray)
                    {
                        reader.Skip();
                        continue;
                    }
                    while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                    {
                        choices++;
                        if (ChoiceCarriesText(ref reader)) delivered++;
                    }
                }
                else if (reader.ValueTextEquals("usage"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        usage = true;
                        ReadUsage(ref reader, ref prompt, ref completion);
                    }
                    else reader.Skip();
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
            return false;
        }
        if (usage)
        {
            _call.UsageReported = true;
            if (prompt >= 0) _call.PromptTokens = prompt;
            if (completion >= 0) _call.CompletionTokens = completion;
            else _call.CompletionTokens += delivered;
        }
        else if (!_call.UsageReported)
        {
            _call.CompletionTokens += delivered;
        }
        return usage && choices == 0;
    }

    /// <summary>Reads one choice object (the reader on its start, left on its end): true when it carries text.</summary>
    private static bool ChoiceCarriesText(ref Utf8JsonReader reader)
    {
        var depth = reader.CurrentDepth;
        var text = false;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == depth))
        {
            if (reader.TokenType != JsonTokenType.PropertyName) continue;
            if (reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("text"u8) || reader.ValueTextEquals("reasoning_content"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String && !reader.ValueSpan.IsEmpty) text = true;
                else reader.Skip();
            }
            else if (reader.ValueTextEquals("tool_calls"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartArray) text = true;
                reader.Skip();
            }
            else if (reader.ValueTextEquals("logprobs"u8))
            {
                reader.Read();
                reader.Skip();
            }
        }
        return text;
    }

    private static void ReadUsage(ref Utf8JsonReader reader, ref long prompt, ref long completion)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var field = reader.ValueTextEquals("prompt_tokens"u8) ? 1 : reader.ValueTextEquals("completion_tokens"u8) ? 2 : 0;
            reader.Read();
            if (field != 0 && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value))
            {
                if (field == 1) prompt = value;
                else completion = value;
            }
            else reader.Skip();
        }
    }

    // ---- JSON ----

    private void ScanJson(ReadOnlySpan<byte> bytes)
    {
        if (_jsonDone) return;
        if (_pendingLength > 0)
        {
            if (!Append(bytes))
            {
                _jsonDone = true;
                _pendingLength = 0;
                return;
            }
            var held = _pending.AsSpan(0, _pendingLength);
            var consumed = ReadJson(held);
            var rest = held[consumed..];
            rest.CopyTo(_pending);
            _pendingLength = rest.Length;
            return;
        }
        var used = ReadJson(bytes);
        if (!_jsonDone && used < bytes.Length && !Append(bytes[used..]))
        {
            _jsonDone = true;
            _pendingLength = 0;
        }
    }

    /// <summary>Reads as far as the bytes go; returns how many were consumed (the rest starts an unfinished token).</summary>
    private int ReadJson(ReadOnlySpan<byte> bytes)
    {
        var reader = new Utf8JsonReader(bytes, isFinalBlock: false, _jsonState);
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName when reader.CurrentDepth == 1:
                        _usageState = reader.ValueTextEquals("usage"u8) ? 1 : 0;
                        break;
                    case JsonTokenType.StartObject when _usageState == 1 && reader.CurrentDepth == 1:
                        _usageState = 2;
                        break;
                    case JsonTokenType.PropertyName when _usageState == 2 && reader.CurrentDepth == 2:
                        _usageField = reader.ValueTextEquals("prompt_tokens"u8) ? 1 : reader.ValueTextEquals("completion_tokens"u8) ? 2 : 0;
                        break;
                    case JsonTokenType.Number when _usageState == 2 && reader.CurrentDepth == 2:
                        if (_usageField != 0 && reader.TryGetInt64(out var value))
                        {
                            _call.UsageReported = true;
                            if (_usageField == 1) _call.PromptTokens = value;
                            else _call.CompletionTokens = value;
                        }
                        _usageField = 0;
                        break;
                    case JsonTokenType.EndObject when _usageState == 2 && reader.CurrentDepth == 1:
                        _call.UsageReported = true;
                        _usageState = 0;
                        break;
                    case JsonTokenType.EndObject when reader.CurrentDepth == 0:
                        _jsonDone = true;
                        return bytes.Length;
                    default:
                        if (_usageState == 1 && reader.CurrentDepth == 1) _usageState = 0;
                        break;
                }
            }
        }
        catch (JsonException)
        {
            _jsonDone = true;
            return bytes.Length;
        }
        _jsonState = reader.CurrentState;
        return (int)reader.BytesConsumed;
    }

    private void ReturnPending()
    {
        var pending = _pending;
        _pending = null;
        _pendingLength = 0;
        if (pending is not null) ArrayPool<byte>.Shared.Return(pending);
    }

    protected override void Dispose(bool disposing)
    {
        ReturnPending();
        base.Dispose(disposing);
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
