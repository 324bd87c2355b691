using Shoal.Contracts;
using Shoal.Agent.Identity;

namespace Shoal.Agent.Tunnels;

/// <summary>Settings of the agent's tunnels.</summary>
public sealed class TunnelOptions
{
    /// <summary>Idle tunnels kept ready per edge; each claimed one is replaced at once.</summary>
    public int IdlePerEdge { get; init; } = 4;
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>How long the agent tries to reach the replica's port when the edge opens a tunnel.</summary>
    public TimeSpan ReplicaConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan RetryMin { get; init; } = TimeSpan.FromMilliseconds(250);
    public TimeSpan RetryMax { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long tunnels to an edge the control plane stopped naming are kept (and kept open) before
    /// they are closed. An edge drops out of the list whenever its control stream to the server
    /// breaks, and the list a restarted server sends first lacks the standalone edges that have not
    /// reconnected yet; an edge that is still serving must not lose its tunnels for that. Zero closes
    /// them at once.
    /// </summary>
    public TimeSpan RemovedEdgeLinger { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Decides whether an https edge's certificate is trusted for tunnels; null (the default): the
    /// system's trust store and the edge's host name, as for any TLS client.
    /// </summary>
    public System.Net.Security.RemoteCertificateValidationCallback? EdgeCertificateValidation { get; init; }

    /// <summary>
    /// Open plain-TCP tunnels to an http edge that is not on this machine's loopback. Off by default:
    /// the tunnel credential and every request would cross the network in clear, so such an edge
    /// gets no tunnels (serve it over https). For networks the operator trusts (a lab, the tests' namespaces).
    /// </summary>
    public bool AllowPlainOverNetwork { get; init; }
}

/// <summary>
/// Keeps a pool of tunnels open to every edge the control plane names, so the node needs no
/// inbound port: edges send requests for this node's replicas down those tunnels.
/// </summary>
public sealed partial class TunnelManager : IAsyncDisposable
{
    private readonly TunnelOptions _options;
    private readonly Func<int, CancellationToken, ValueTask<bool>> _isReplicaPort;
    private readonly TunnelHttpServer _server;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger<TunnelManager> _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TunnelPool> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ITimer> _lingering = new(StringComparer.Ordinal);
    private NodeIdentity? _identity;
    private bool _disposed;

    public TunnelManager(TunnelOptions options, Func<int, bool> isReplicaPort, TimeProvider time, ILoggerFactory loggers)
        : this(options, (port, _) => ValueTask.FromResult(isReplicaPort(port)), time, loggers)
    {
    }

    /// <param name="isReplicaPort">Whether a port the edge asks for is a replica's here; may wait a little (see <see cref="Replicas.ReplicaManager.WaitForReplicaPortAsync"/>).</param>
    public TunnelManager(TunnelOptions options, Func<int, CancellationToken, ValueTask<bool>> isReplicaPort, TimeProvider time, ILoggerFactory loggers)
    {
        _options = options;
        _isReplicaPort = isReplicaPort;
        _server = new TunnelHttpServer(options, loggers);
        _time = time;
        _loggers = loggers;
        _logger = loggers.CreateLogger<TunnelManager>();
    }

    /// <summary>Edges with a pool now (those no longer named but still lingering included).</summary>
    public IReadOnlyCollection<string> Edges
    {
        get
        {
            lock (_lock) return [.. _pools.Keys];
        }
    }

    /// <summary>Tunnels open now (idle or carrying a connection), over all edges.</summary>
    public int OpenTunnels
    {
        get
        {
            lock (_lock) return _pools.Values.Sum(p => p.Open);
        }
    }

    /// <summary>
    /// Keeps pools to <paramref name="edges"/>: starts the missing; those no longer named are closed
    /// after <see cref="TunnelOptions.RemovedEdgeLinger"/> unless named again meanwhile. New
    /// credentials restart every pool.
    /// </summary>
    public void Update(NodeIdentity identity, IReadOnlyCollection<string> edges)
    {
        var stale = new List<TunnelPool>();
        lock (_lock)
        {
            if (_disposed) return;
            if (_identity is not null && (_identity.NodeId != identity.NodeId || _identity.NodeSecret != identity.NodeSecret))
            {
                stale.AddRange(_pools.Values);
                _pools.Clear();
                foreach (var timer in _lingering.Values) timer.Dispose();
                _lingering.Clear();
            }
            _identity = identity;
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (var edge in edges)
            {
                if (!TunnelWire.TryParseEdge(edge, out _, out _, out _))
                {
                    LogBadEdge(_logger, edge);
                    continue;
                }
                wanted.Add(edge);
            }
            foreach (var (url, pool) in _pools.Where(p => !wanted.Contains(p.Key)).ToList())
            {
                if (_options.RemovedEdgeLinger <= TimeSpan.Zero)
                {
                    _pools.Remove(url);
                    stale.Add(pool);
                }
                else if (!_lingering.ContainsKey(url))
                {
                    _lingering[url] = _time.CreateTimer(static s =>
                    {
                        var (manager, edge) = ((TunnelManager, string))s!;
                        manager.Expire(edge);
                    }, (this, url), _options.RemovedEdgeLinger, Timeout.InfiniteTimeSpan);
                    LogLingering(_logger, url, _options.RemovedEdgeLinger.TotalSeconds);
                }
            }
            foreach (var url in wanted)
            {
                if (_lingering.Remove(url, out var timer)) timer.Dispose();
                if (_pools.ContainsKey(url)) continue;
                var pool = new TunnelPool(url, identity, _options, _isReplicaPort, _server, _time, _loggers.CreateLogger<TunnelPool>());
                _pools[url] = pool;
                pool.Start();
                LogPoolStarted(_logger, url, _options.IdlePerEdge);
            }
        }
        foreach (var pool in stale) _ = pool.DisposeAsync().AsTask();
    }

    // The linger of an edge no longer named is over: its tunnels close.
    private void Expire(string url)
    {
        TunnelPool? pool;
        lock (_lock)
        {
            if (!_lingering.Remove(url, out var timer)) return;
            timer.Dispose();
            if (!_pools.Remove(url, out pool)) return;
        }
        LogPoolClosed(_logger, url);
        _ = pool.DisposeAsync().AsTask();
    }

    public async ValueTask DisposeAsync()
    {
        List<TunnelPool> pools;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var timer in _lingering.Values) timer.Dispose();
            _lingering.Clear();
            pools = [.. _pools.Values];
            _pools.Clear();
        }
        // Graceful: no new tunnels and no idle ones, then the HTTP/2 server stops (GOAWAY; requests in
        // flight finish, up to its stop timeout), then whatever is left is closed.
        foreach (var pool in pools) await pool.StopIdleAsync();
        await _server.DisposeAsync();
        foreach (var pool in pools) await pool.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Keeping {Count} idle tunnel(s) open to edge {Url}")]
    private static partial void LogPoolStarted(ILogger logger, string url, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "The control plane no longer names edge {Url}: its tunnels stay open for {Seconds} s in case it comes back")]
    private static partial void LogLingering(ILogger logger, string url, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closed the tunnels to edge {Url}: not named again in time")]
    private static partial void LogPoolClosed(ILogger logger, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignoring edge URL '{Url}': not an http(s) URL")]
    private static partial void LogBadEdge(ILogger logger, string url);
}
