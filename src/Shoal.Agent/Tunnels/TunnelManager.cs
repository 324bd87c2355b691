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
}

/// <summary>
/// Keeps a pool of tunnels open to every edge the control plane names, so the node needs no
/// inbound port: edges send requests for this node's replicas down those tunnels.
/// </summary>
public sealed partial class TunnelManager : IAsyncDisposable
{
    private readonly TunnelOptions _options;
    private readonly Func<int, bool> _isReplicaPort;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger<TunnelManager> _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TunnelPool> _pools = new(StringComparer.Ordinal);
    private NodeIdentity? _identity;
    private bool _disposed;

    public TunnelManager(TunnelOptions options, Func<int, bool> isReplicaPort, TimeProvider time, ILoggerFactory loggers)
    {
        _options = options;
        _isReplicaPort = isReplicaPort;
        _time = time;
        _loggers = loggers;
        _logger = loggers.CreateLogger<TunnelManager>();
    }

    /// <summary>Edges with a pool now.</summary>
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

    /// <summary>Keeps pools to exactly <paramref name="edges"/>; new credentials restart every pool.</summary>
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
            }
            _identity = identity;
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (var edge in edges)
            {
                if (TunnelPool.TunnelUri(edge) is null)
                {
                    LogBadEdge(_logger, edge);
                    continue;
                }
                wanted.Add(edge);
            }
            foreach (var (url, pool) in _pools.Where(p => !wanted.Contains(p.Key)).ToList())
            {
                _pools.Remove(url);
                stale.Add(pool);
            }
            foreach (var url in wanted)
            {
                if (_pools.ContainsKey(url)) continue;
                var pool = new TunnelPool(url, identity, _options, _isReplicaPort, _time, _loggers.CreateLogger<TunnelPool>());
                _pools[url] = pool;
                pool.Start();
                LogPoolStarted(_logger, url, _options.IdlePerEdge);
            }
        }
        foreach (var pool in stale) _ = pool.DisposeAsync().AsTask();
    }

    public async ValueTask DisposeAsync()
    {
        List<TunnelPool> pools;
        lock (_lock)
        {
            _disposed = true;
            pools = [.. _pools.Values];
            _pools.Clear();
        }
        foreach (var pool in pools) await pool.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Keeping {Count} idle tunnel(s) open to edge {Url}")]
    private static partial void LogPoolStarted(ILogger logger, string url, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignoring edge URL '{Url}': not an http(s) URL")]
    private static partial void LogBadEdge(ILogger logger, string url);
}
