using StackExchange.Redis;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The Redis the edges share for the gateway's counters (<see cref="EdgeOptions.Redis"/>), or none.
/// Connects in the background and reconnects on its own (StackExchange.Redis); callers check
/// <see cref="IsConnected"/> and fall back when it is not (rate limits: this edge's share; budgets: refuse).
/// </summary>
public sealed partial class GatewayRedis : IAsyncDisposable
{
    private readonly ConnectionMultiplexer? _connection;

    public GatewayRedis(EdgeOptions options, ILogger<GatewayRedis> logger)
    {
        if (string.IsNullOrWhiteSpace(options.Redis)) return;
        var config = ConfigurationOptions.Parse(options.Redis);
        config.AbortOnConnectFail = false;
        config.ConnectTimeout = 2000;
        config.SyncTimeout = 1000;
        config.AsyncTimeout = 1000;
        config.ClientName = "shoal-edge";
        // While disconnected, commands fail at once rather than wait in a backlog: callers fall back.
        config.BacklogPolicy = BacklogPolicy.FailFast;
        _connection = ConnectionMultiplexer.Connect(config);
        if (!_connection.IsConnected) LogNotConnected(logger, string.Join(", ", config.EndPoints));
    }

    /// <summary>True when a Redis is configured (whether or not it is reachable now).</summary>
    public bool Configured => _connection is not null;

    public bool IsConnected => _connection?.IsConnected == true;

    /// <summary>The database, when configured; operations on it throw <see cref="RedisConnectionException"/> or <see cref="RedisTimeoutException"/> while Redis is unreachable.</summary>
    public IDatabase? Database => _connection?.GetDatabase();

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null) await _connection.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis at {Endpoints} is not reachable yet; the gateway's limits use this edge's share until it is, and budgets refuse")]
    private static partial void LogNotConnected(ILogger logger, string endpoints);
}
