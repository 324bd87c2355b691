using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.Sim.Fleet;

/// <summary>What a simulated node is doing, as the simulator decided.</summary>
internal enum NodeMode
{
    /// <summary>Connected or trying to be.</summary>
    Active,
    /// <summary>Churned away; reconnects at <see cref="FleetNode.NextConnectAt"/>.</summary>
    Away,
    /// <summary>Socket closed on purpose; never returns.</summary>
    Killed,
    /// <summary>Holds its socket open but sends nothing; does not return once the server closes it.</summary>
    Silenced,
    /// <summary>The server refused its credentials or token; gives up.</summary>
    Refused,
}

/// <summary>
/// One simulated agent: a WebSocket that speaks the agent protocol (hello, heartbeats, acks, logs refusals)
/// and replicas that go starting → ready after a delay. No thread or timer of its own: the
/// simulator's tick loop sends its heartbeats and moves its replicas on; its receive loop is an async read.
/// </summary>
internal sealed class FleetNode(int index, string name, FleetSimulator fleet)
{
    private const int ReceiveChunk = 2048;
    private readonly SemaphoreSlim _send = new(1, 1);
    private readonly Dictionary<string, SimReplica> _replicas = new(StringComparer.Ordinal);
    private ClientWebSocket? _ws;
    private long _appliedRevision;
    private int _heartbeatBusy;
    private int _failures;

    public int Index { get; } = index;
    public string Name { get; } = name;
    public string? NodeId { get; set; }
    public string? Secret { get; set; }
    public volatile NodeMode Mode;
    public volatile bool Connected;
    public volatile bool Connecting;
    /// <summary>Stopwatch timestamp when the next heartbeat is due.</summary>
    public long NextHeartbeat;
    /// <summary>Stopwatch timestamp of the earliest replica transition; long.MaxValue when none.</summary>
    public long NextTransition = long.MaxValue;
    /// <summary>Stopwatch timestamp before which no connection is attempted.</summary>
    public long NextConnectAt;
    public long Interval;

    public int ReplicaCount
    {
        get
        {
            lock (_replicas) return _replicas.Count;
        }
    }

    public int ReadyCount
    {
        get
        {
            lock (_replicas) return _replicas.Values.Count(r => r.State == ReplicaState.Ready);
        }
    }

    /// <summary>Connects, says hello, then reads until the session ends; schedules the next attempt when it should return.</summary>
    public async Task RunSessionAsync(Uri uri, HttpMessageInvoker invoker, CancellationToken ct)
    {
        var registering = NodeId is null;
        var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        ws.Options.KeepAliveInterval = TimeSpan.Zero;
        ws.Options.SetBuffer(ReceiveChunk, ReceiveChunk);
        if (registering)
        {
            ws.Options.SetRequestHeader(AgentProtocol.ProvisioningTokenHeader, fleet.Options.Token);
        }
        else
        {
            ws.Options.SetRequestHeader(AgentProtocol.NodeIdHeader, NodeId);
            ws.Options.SetRequestHeader(AgentProtocol.NodeSecretHeader, Secret);
        }
        ws.Options.SetRequestHeader(AgentProtocol.NodeNameHeader, Name);
        var lost = false;
        try
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(15));
                await ws.ConnectAsync(uri, invoker, timeout.Token);
            }
            catch (Exception e) when (e is WebSocketException or HttpRequestException or OperationCanceledException && !ct.IsCancellationRequested)
            {
                fleet.Counters.CountConnectFailure();
                if (ws.HttpStatusCode == HttpStatusCode.Unauthorized)
                {
                    Mode = NodeMode.Refused;
                    fleet.NodeRefused(this, registering
                        ? "the provisioning token was refused (wrong, expired, revoked or used up)"
                        : "the node's credentials were refused");
                    return;
                }
                ScheduleReconnect();
                return;
            }
            fleet.Counters.ConnectTimes.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            Volatile.Write(ref _ws, ws);
            if (Mode is NodeMode.Killed or NodeMode.Away)
            {
                // Dropped while connecting.
                ws.Abort();
                return;
            }

            var helloSent = Stopwatch.GetTimestamp();
            await SendAsync(ws, Hello(), ct);
            if (await ReceiveAsync(ws, ct) is not WelcomeMessage welcome)
            {
                fleet.Counters.CountConnectFailure();
                ScheduleReconnect();
                return;
            }
            fleet.Counters.HelloTimes.Add(Stopwatch.GetElapsedTime(helloSent).TotalMilliseconds);
            if (registering)
            {
                if (welcome.NodeSecret is not { Length: > 0 } secret) throw new WebSocketException("welcome after registration carries no node secret");
                NodeId = welcome.NodeId;
                Secret = secret;
                fleet.Registered(this);
            }
            var interval = fleet.Options.HeartbeatInterval ?? TimeSpan.FromMilliseconds(Math.Max(100, welcome.HeartbeatIntervalMs));
            Interval = (long)(interval.TotalSeconds * Stopwatch.Frequency);
            Volatile.Write(ref NextHeartbeat, Stopwatch.GetTimestamp() + Interval);
            _failures = 0;
            Connected = true;
            Connecting = false;
            fleet.Counters.CountConnect();

            while (!ct.IsCancellationRequested)
            {
                var message = await ReceiveAsync(ws, ct);
                switch (message)
                {
                    case null:
                        lost = true;
                        return;
                    case AssignmentsMessage assignments:
                        Apply(assignments);
                        fleet.Counters.CountAssignments();
                        if (Mode != NodeMode.Silenced)
                        {
                            await SendAsync(ws, new AckMessage { Revision = assignments.Revision }, ct);
                            fleet.Counters.CountAck();
                        }
                        break;
                    case LogsRequestMessage logs when Mode != NodeMode.Silenced:
                        await SendAsync(ws, new LogsDataMessage { RequestId = logs.RequestId, End = true, Error = "a simulated node keeps no logs" }, ct);
                        break;
                    default:
                        // Edges, logs cancels: nothing to do for a simulated node.
                        break;
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException or JsonException or NotSupportedException or ObjectDisposedException
            or OperationCanceledException)
        {
            lost = !ct.IsCancellationRequested;
        }
        finally
        {
            Connected = false;
            Connecting = false;
            Interlocked.CompareExchange(ref _ws, null, ws);
            ws.Abort();
            ws.Dispose();
            if (lost && !ct.IsCancellationRequested)
            {
                if (Mode == NodeMode.Active)
                {
                    fleet.Counters.CountSessionLost();
                    ScheduleReconnect();
                }
            }
        }
    }

    private void ScheduleReconnect()
    {
        // As the agent does: exponential back-off from 1 s to 30 s with ±50 % jitter.
        var failures = Math.Min(++_failures, 6);
        var seconds = Math.Min(30, Math.Pow(2, failures - 1)) * (0.5 + Random.Shared.NextDouble());
        NextConnectAt = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
    }

    /// <summary>Closes the socket at once (the peer sees it closed); the session's read ends.</summary>
    public void Drop(NodeMode mode, long returnAt = 0)
    {
        Mode = mode;
        NextConnectAt = returnAt;
        Volatile.Read(ref _ws)?.Abort();
    }

    /// <summary>Sends a heartbeat if none is in flight; called by the tick loop when one is due.</summary>
    public void TrySendHeartbeat(long due, long now, CancellationToken ct)
    {
        if (Interlocked.CompareExchange(ref _heartbeatBusy, 1, 0) != 0) return;
        var next = due + Interval;
        Volatile.Write(ref NextHeartbeat, next <= now ? now + Interval : next);
        _ = SendHeartbeatAsync(due, ct);
    }

    private async Task SendHeartbeatAsync(long due, CancellationToken ct)
    {
        var ws = Volatile.Read(ref _ws);
        try
        {
            if (ws is null) return;
            HeartbeatMessage heartbeat;
            lock (_replicas) heartbeat = new HeartbeatMessage { AppliedRevision = _appliedRevision, Replicas = ReportsLocked() };
            await SendAsync(ws, heartbeat, ct);
            fleet.Counters.Heartbeat(Stopwatch.GetElapsedTime(due).TotalMilliseconds);
        }
        catch (Exception e) when (e is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            ws?.Abort();
        }
        finally
        {
            Volatile.Write(ref _heartbeatBusy, 0);
        }
    }

    /// <summary>Moves replicas whose start delay has passed to ready; true when one did (a heartbeat reports it at once).</summary>
    public bool Advance(long now)
    {
        var changed = false;
        var next = long.MaxValue;
        var utc = fleet.Time.GetUtcNow();
        lock (_replicas)
        {
            foreach (var r in _replicas.Values)
            {
                if (r.State != ReplicaState.Starting) continue;
                if (r.ReadyDue <= now)
                {
                    r.State = ReplicaState.Ready;
                    r.ReadyAt = utc;
                    changed = true;
                }
                else
                {
                    next = Math.Min(next, r.ReadyDue);
                }
            }
            NextTransition = next;
        }
        return changed;
    }

    private void Apply(AssignmentsMessage assignments)
    {
        var now = Stopwatch.GetTimestamp();
        var utc = fleet.Time.GetUtcNow();
        var delay = (long)(fleet.Options.StartDelay.TotalSeconds * Stopwatch.Frequency);
        lock (_replicas)
        {
            if (assignments.Revision < _appliedRevision) return;
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (var a in assignments.Replicas)
            {
                wanted.Add(a.ReplicaId);
                if (!_replicas.ContainsKey(a.ReplicaId))
                {
                    _replicas[a.ReplicaId] = new SimReplica(a.ReplicaId) { State = ReplicaState.Starting, StartedAt = utc, ReadyDue = now + delay };
                    NextTransition = Math.Min(NextTransition, now + delay);
                }
            }
            foreach (var id in _replicas.Keys.Where(id => !wanted.Contains(id)).ToList()) _replicas.Remove(id);
            _appliedRevision = assignments.Revision;
        }
        // The agent reports a change at once rather than at the next tick of its interval.
        Volatile.Write(ref NextHeartbeat, now);
    }

    private HelloMessage Hello()
    {
        var gpu = fleet.Options.GpuType;
        lock (_replicas)
        {
            return new HelloMessage
            {
                NodeName = Name,
                AgentVersion = "shoal-sim-fleet",
                Runtimes = ["process"],
                Address = "127.0.0.1",
                Hardware = new NodeHardware
                {
                    Gpus = [new GpuInfo { Index = 0, Uuid = $"GPU-sim-{Name}", Name = gpu, Type = gpu, MemoryMiB = 24576, Simulated = true }],
                    CpuCores = 8,
                    MemoryMiB = 32768,
                    Hostname = Name,
                },
                AppliedRevision = _appliedRevision,
                Replicas = ReportsLocked(),
            };
        }
    }

    private ReplicaReport[] ReportsLocked()
    {
        if (_replicas.Count == 0) return [];
        var reports = new ReplicaReport[_replicas.Count];
        var i = 0;
        foreach (var r in _replicas.Values)
        {
            var ready = r.State == ReplicaState.Ready;
            reports[i++] = new ReplicaReport
            {
                ReplicaId = r.Id,
                State = r.State,
                Healthy = ready,
                HostPort = ready ? fleet.Options.ReplicaPort : null,
                StartedAt = r.StartedAt,
                ReadyAt = r.ReadyAt,
                Load = ready ? s_idle : null,
            };
        }
        return reports;
    }

    private static readonly ReplicaLoad s_idle = new() { Running = 0, Waiting = 0 };

    private async Task SendAsync(ClientWebSocket ws, AgentMessage message, CancellationToken ct)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage);
        await _send.WaitAsync(ct);
        try
        {
            await ws.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, ct);
        }
        finally
        {
            _send.Release();
        }
    }

    /// <summary>Reads one message; null when the server closed the connection.</summary>
    private static async Task<AgentMessage?> ReceiveAsync(WebSocket ws, CancellationToken ct)
    {
        // A small buffer while waiting (10,000 nodes wait at once); a pooled larger one only for a large message.
        var small = ArrayPool<byte>.Shared.Rent(ReceiveChunk);
        byte[]? big = null;
        var length = 0;
        try
        {
            var result = await ws.ReceiveAsync(small.AsMemory(0, ReceiveChunk), ct);
            if (result.MessageType == WebSocketMessageType.Close) return null;
            length = result.Count;
            var buffer = small;
            while (!result.EndOfMessage)
            {
                if (length == buffer.Length)
                {
                    if (length >= AgentProtocol.MaxMessageBytes) throw new WebSocketException("message larger than the protocol allows");
                    var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    if (big is not null) ArrayPool<byte>.Shared.Return(big);
                    big = buffer = bigger;
                }
                result = await ws.ReceiveAsync(buffer.AsMemory(length), ct);
                length += result.Count;
            }
            return JsonSerializer.Deserialize(buffer.AsSpan(0, length), ShoalJsonContext.Default.AgentMessage);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(small);
            if (big is not null) ArrayPool<byte>.Shared.Return(big);
        }
    }

    private sealed class SimReplica(string id)
    {
        public string Id { get; } = id;
        public ReplicaState State { get; set; }
        public DateTimeOffset? StartedAt { get; set; }
        public DateTimeOffset? ReadyAt { get; set; }
        public long ReadyDue { get; set; }
    }
}
