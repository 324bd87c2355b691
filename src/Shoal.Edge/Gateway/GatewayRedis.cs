using StackExchange.Redis;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The Redis the edges share for the gateway's counters (<see cref="EdgeOptions.Redis"/>), or none.
/// Connects in the background and reconnects on its own (StackExchange.Redis); callers check
/// <see cref="IsConnected"/> and fall back when it is not (rate limits: this edge's share; budgets: refuse).
/// A command on a live connection gets <see cref="AnswerTimeout"/> to answer (a slow Redis is waited
/// for, not taken for a lost one); a connection that reads nothing for several of those while commands
/// time out is dropped by StackExchange.Redis itself (a hung Redis), and then <see cref="IsConnected"/> is false.
/// </summary>
public sealed partial class GatewayRedis : IAsyncDisposable
{
    /// <summary>How long a command waits for Redis' answer on a live connection.</summary>
    public static readonly TimeSpan DefaultAnswerTimeout = TimeSpan.FromSeconds(5);

    private readonly ConnectionMultiplexer? _connection;

    /// <param name="answerTimeout">How long a command waits for an answer (default <see cref="DefaultAnswerTimeout"/>; tests shorten it).</param>
    public GatewayRedis(EdgeOptions options, ILogger<GatewayRedis> logger, TimeSpan? answerTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        AnswerTimeout = answerTimeout ?? DefaultAnswerTimeout;
        if (string.IsNullOrWhiteSpace(options.Redis)) return;
        var config = ConfigurationOptions.Parse(options.Redis);
        config.AbortOnConnectFail = false;
        config.ConnectTimeout = 2000;
        config.SyncTimeout = (int)AnswerTimeout.TotalMilliseconds;
        config.AsyncTimeout = (int)AnswerTimeout.TotalMilliseconds;
        config.ClientName = "shoal-edge";
        // While disconnected, commands fail at once rather than wait in a backlog: callers fall back.
        config.BacklogPolicy = BacklogPolicy.FailFast;
        _connection = ConnectionMultiplexer.Connect(config);
        if (!_connection.IsConnected) LogNotConnected(logger, string.Join(", ", config.EndPoints));
    }

    /// <summary>How long a command waits for Redis' answer while connected (the connection's async timeout).</summary>
    public TimeSpan AnswerTimeout { get; }

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
