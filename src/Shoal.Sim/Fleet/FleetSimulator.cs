using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.Sim.Fleet;

/// <summary>
/// <c>shoal sim fleet</c>: one process holding many simulated agents, each a real WebSocket to the
/// control plane speaking the agent protocol. Built to hold 10,000 beside a server on a small
/// machine: one shared HTTP handler, no thread or timer per node, one tick loop every 100 ms that
/// sends the heartbeats due, moves replicas to ready, starts (re)connections and applies churn.
/// </summary>
public sealed class FleetSimulator : IAsyncDisposable
{
    private static readonly TimeSpan s_tick = TimeSpan.FromMilliseconds(100);

    private readonly FleetNode[] _nodes;
    private readonly Uri _connectUri;
    private readonly HttpMessageInvoker _invoker;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _credentialsLock = new();
    private readonly long _started = Stopwatch.GetTimestamp();
    private long _lastStatsAt;
    private long _lastStatsHeartbeats;
    private Task? _loop;
    private double _churnDebt;
    private long _killed;
    private long _silenced;
    private long _churned;
    private string? _refusal;

    public FleetSimulator(FleetOptions options, TimeProvider? time = null)
    {
        var errors = options.Validate();
        if (errors.Count > 0) throw new ArgumentException(string.Join("; ", errors), nameof(options));
        Options = options;
        Time = time ?? TimeProvider.System;
        _connectUri = WebSocketAddress.Create(options.Server, AgentProtocol.ConnectPath)!;
        _invoker = new HttpMessageInvoker(new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(10),
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
        });
        var known = options.CredentialsFile is { } file && File.Exists(file) ? ReadCredentials(file) : [];
        _nodes = new FleetNode[options.Nodes];
        for (var i = 0; i < _nodes.Length; i++)
        {
            var name = $"{options.NamePrefix}-{i:D5}";
            _nodes[i] = new FleetNode(i, name, this);
            if (known.TryGetValue(name, out var c))
            {
                _nodes[i].NodeId = c.NodeId;
                _nodes[i].Secret = c.Secret;
            }
        }
        _lastStatsAt = _started;
    }

    public FleetOptions Options { get; }

    internal TimeProvider Time { get; }

    internal FleetCounters Counters { get; } = new();

    /// <summary>Why the server refused a node's token or credentials, when it did (those nodes gave up).</summary>
    public string? Refusal => Volatile.Read(ref _refusal);

    /// <summary>The nodes' identities once registered (name, id, secret), in node order; null ids for nodes not registered yet.</summary>
    public IReadOnlyList<(string Name, string? NodeId)> Nodes => [.. _nodes.Select(n => (n.Name, n.NodeId))];

    /// <summary>Starts connecting every node and the tick loop.</summary>
    public void Start()
    {
        if (_loop is not null) throw new InvalidOperationException("the fleet is running already");
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(s_tick);
        int connecting;
        do
        {
            var now = Stopwatch.GetTimestamp();
            connecting = _nodes.Count(n => n.Connecting);
            ChurnTick();
            foreach (var node in _nodes)
            {
                var mode = node.Mode;
                if (mode == NodeMode.Away && now >= node.NextConnectAt) node.Mode = mode = NodeMode.Active;
                if (node.Connected)
                {
                    if (node.NextTransition <= now && node.Advance(now)) Volatile.Write(ref node.NextHeartbeat, now);
                    var due = Volatile.Read(ref node.NextHeartbeat);
                    if (mode == NodeMode.Active && due <= now) node.TrySendHeartbeat(due, now, ct);
                }
                else if (mode == NodeMode.Active && !node.Connecting && now >= node.NextConnectAt && connecting < Options.ConnectConcurrency)
                {
                    connecting++;
                    node.Connecting = true;
                    _ = node.RunSessionAsync(_connectUri, _invoker, ct);
                }
            }
        }
        while (await TickAsync(timer, ct));
    }

    /// <summary>Waits for the next tick; false once <paramref name="ct"/> is cancelled.</summary>
    private static async Task<bool> TickAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            return await timer.WaitForNextTickAsync(ct);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private void ChurnTick()
    {
        if (Options.ChurnPerMinute <= 0) return;
        _churnDebt += Options.ChurnPerMinute * s_tick.TotalMinutes;
        var returnAt = Stopwatch.GetTimestamp() + (long)(Options.ChurnDownTime.TotalSeconds * Stopwatch.Frequency);
        while (_churnDebt >= 1)
        {
            _churnDebt -= 1;
            if (Pick(1).FirstOrDefault() is { } node)
            {
                node.Drop(NodeMode.Away, returnAt);
                Interlocked.Increment(ref _churned);
            }
        }
    }

    /// <summary>Connected, active nodes chosen at random.</summary>
    private List<FleetNode> Pick(int count)
    {
        var candidates = _nodes.Where(n => n.Connected && n.Mode == NodeMode.Active).ToArray();
        Random.Shared.Shuffle(candidates);
        return [.. candidates.Take(count)];
    }

    /// <summary>Closes the sockets of <paramref name="count"/> connected nodes at once; they do not return.</summary>
    public IReadOnlyList<DroppedNode> Kill(int count)
    {
        var picked = Pick(count);
        var at = Time.GetUtcNow();
        foreach (var node in picked) node.Drop(NodeMode.Killed);
        Interlocked.Add(ref _killed, picked.Count);
        return [.. picked.Select(n => new DroppedNode(n.Name, n.NodeId!, at))];
    }

    /// <summary><paramref name="count"/> connected nodes stop sending anything but keep their sockets open.</summary>
    public IReadOnlyList<DroppedNode> Silence(int count)
    {
        var picked = Pick(count);
        var at = Time.GetUtcNow();
        foreach (var node in picked) node.Mode = NodeMode.Silenced;
        Interlocked.Add(ref _silenced, picked.Count);
        return [.. picked.Select(n => new DroppedNode(n.Name, n.NodeId!, at))];
    }

    /// <summary>Closes one node's socket and has it return after <paramref name="away"/> (as churn does).</summary>
    public DroppedNode? Bounce(string name, TimeSpan away)
    {
        var node = _nodes.FirstOrDefault(n => n.Name == name && n.Connected);
        if (node is null) return null;
        node.Drop(NodeMode.Away, Stopwatch.GetTimestamp() + (long)(away.TotalSeconds * Stopwatch.Frequency));
        Interlocked.Increment(ref _churned);
        return new DroppedNode(node.Name, node.NodeId!, Time.GetUtcNow());
    }

    /// <summary>The figures now; window figures (heartbeat rate and lateness) cover the time since the previous call.</summary>
    public FleetStats Snapshot()
    {
        var now = Stopwatch.GetTimestamp();
        var heartbeats = Counters.Heartbeats;
        var window = Math.Max(1e-3, (now - Interlocked.Exchange(ref _lastStatsAt, now)) / (double)Stopwatch.Frequency);
        var inWindow = heartbeats - Interlocked.Exchange(ref _lastStatsHeartbeats, heartbeats);
        int replicas = 0, ready = 0, connected = 0, away = 0;
        foreach (var n in _nodes)
        {
            if (n.Connected) connected++;
            if (n.Mode == NodeMode.Away) away++;
            replicas += n.ReplicaCount;
            ready += n.ReadyCount;
        }
        return new FleetStats
        {
            Time = Time.GetUtcNow(),
            ElapsedSeconds = Math.Round(Stopwatch.GetElapsedTime(_started).TotalSeconds, 1),
            Nodes = _nodes.Length,
            Connected = connected,
            Registered = Counters.Registrations,
            Connects = Counters.Connects,
            ConnectFailures = Counters.ConnectFailures,
            SessionsLost = Counters.SessionsLost,
            ConnectP99Ms = Round(Counters.ConnectTimes.Percentile(99)),
            HelloP50Ms = Round(Counters.HelloTimes.Percentile(50)),
            HelloP99Ms = Round(Counters.HelloTimes.Percentile(99)),
            HeartbeatsSent = heartbeats,
            HeartbeatsPerSecond = Math.Round(inWindow / window, 1),
            HeartbeatLateP99Ms = Round(LatencyRecorder.Percentile(Counters.HeartbeatLate.Drain(), 99)),
            AssignmentsReceived = Counters.Assignments,
            AcksSent = Counters.Acks,
            Replicas = replicas,
            ReplicasReady = ready,
            Killed = Interlocked.Read(ref _killed),
            Silenced = Interlocked.Read(ref _silenced),
            Churned = Interlocked.Read(ref _churned),
            Away = away,
        };
    }

    private static double? Round(double? value) => value is { } v ? Math.Round(v, 2) : null;

    /// <summary>Waits until <paramref name="count"/> nodes are connected; throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.</summary>
    public async Task WaitConnectedAsync(int count, TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (_nodes.Count(n => n.Connected) < count)
        {
            if (Refusal is { } refusal) throw new InvalidOperationException(refusal);
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"{_nodes.Count(n => n.Connected)} of {count} nodes connected after {timeout}");
            await Task.Delay(50, ct);
        }
    }

    internal void NodeRefused(FleetNode node, string reason) => Interlocked.CompareExchange(ref _refusal, $"{node.Name}: {reason}", null);

    internal void Registered(FleetNode node)
    {
        Counters.CountRegistered();
        if (Options.CredentialsFile is not { } file) return;
        var line = JsonSerializer.Serialize(new FleetCredential { Name = node.Name, NodeId = node.NodeId!, Secret = node.Secret! }, FleetJsonContext.Default.FleetCredential);
        lock (_credentialsLock)
        {
            var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using var stream = new FileStream(file, options);
            using var writer = new StreamWriter(stream);
            writer.WriteLine(line);
        }
    }

    private static Dictionary<string, FleetCredential> ReadCredentials(string file)
    {
        var known = new Dictionary<string, FleetCredential>(StringComparer.Ordinal);
        var number = 0;
        foreach (var line in File.ReadLines(file))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var c = JsonSerializer.Deserialize(line, FleetJsonContext.Default.FleetCredential);
                if (c is not null) known[c.Name] = c;
            }
            catch (JsonException e)
            {
                throw new FormatException($"{file}, line {number}: not a node credential ({e.Message})", e);
            }
        }
        return known;
    }

    /// <summary>Runs a fleet until <paramref name="ct"/> is cancelled or the options' duration is over, writing a stats line every interval.</summary>
    public static async Task RunAsync(FleetOptions options, Action<FleetStats> stats, Action<string> note, CancellationToken ct)
    {
        await using var fleet = new FleetSimulator(options);
        fleet.Start();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (options.Duration is { } duration) linked.CancelAfter(duration);
        var started = Stopwatch.GetTimestamp();
        var killed = options.Kill == 0;
        var silenced = options.Silence == 0;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        var nextStats = options.StatsInterval;
        while (await TickAsync(timer, linked.Token))
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            if (!killed && elapsed >= options.KillAfter)
            {
                killed = true;
                var dropped = fleet.Kill(options.Kill);
                note($"killed {dropped.Count} nodes at {(dropped.Count > 0 ? dropped[0].At : (DateTimeOffset?)null):O}: {string.Join(' ', dropped.Select(d => d.Name))}");
            }
            if (!silenced && elapsed >= options.SilenceAfter)
            {
                silenced = true;
                var quiet = fleet.Silence(options.Silence);
                note($"silenced {quiet.Count} nodes at {(quiet.Count > 0 ? quiet[0].At : (DateTimeOffset?)null):O}: {string.Join(' ', quiet.Select(d => d.Name))}");
            }
            if (elapsed >= nextStats)
            {
                nextStats += options.StatsInterval;
                stats(fleet.Snapshot());
            }
            if (fleet.Refusal is { } refusal && fleet.Snapshot() is { Connected: 0 })
            {
                throw new InvalidOperationException(refusal);
            }
        }
        stats(fleet.Snapshot());
    }

    /// <summary>Writes <paramref name="stats"/> as one line of JSON.</summary>
    public static string ToJson(FleetStats stats) => JsonSerializer.Serialize(stats, FleetJsonContext.Default.FleetStats);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null) await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var node in _nodes) node.Drop(NodeMode.Killed);
        _invoker.Dispose();
        _stop.Dispose();
    }
}
