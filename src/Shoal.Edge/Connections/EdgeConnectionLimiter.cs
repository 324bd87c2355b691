using System.Net;
using Microsoft.AspNetCore.Connections;

namespace Shoal.Edge.Connections;

/// <summary>
/// The first thing every connection to the edge meets, before TLS: it counts connections, overall
/// and per remote IP address, and closes at once any that would go past
/// <see cref="EdgeOptions.MaxConnections"/> or <see cref="EdgeOptions.MaxConnectionsPerAddress"/>.
/// Whatever the limits, the edge's listener (<see cref="EdgeSocketListener"/>) closes a connection
/// that was given one of the process's last <see cref="EdgeConnectionLimits.Headroom"/> file
/// descriptors, and reports it here.
/// A connection is counted for its whole life, upgrades and tunnels included, because it holds a
/// file descriptor all that time (Kestrel's own limit stops counting a connection once it is
/// upgraded). An authenticated tunnel leaves its address's count (<see cref="ConnectionLease.LeaveAddressCount"/>):
/// tunnels are limited per node instead. Refusals are logged at most once per <see cref="LogInterval"/>, with their number.
/// </summary>
public sealed partial class EdgeConnectionLimiter : IDisposable
{
    /// <summary>Refusals are reported at most this often, so a flood cannot flood the log.</summary>
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private readonly TimeProvider _time;
    private readonly ILogger<EdgeConnectionLimiter> _logger;
    private int _open;
    private long _refusedLimit;
    private long _refusedAddress;
    private long _refusedFiles;
    private int _flushArmed;
    private readonly ITimer _flush;
    private long _lastReport = long.MinValue;
    private int _unreported;
    private string? _latestRefusal;

    public EdgeConnectionLimiter(EdgeOptions options, TimeProvider time, ILogger<EdgeConnectionLimiter> logger)
        : this(options, EdgeConnectionLimits.ProcessFileLimit(), time, logger)
    {
    }

    internal EdgeConnectionLimiter(EdgeOptions options, long? fileLimit, TimeProvider time, ILogger<EdgeConnectionLimiter> logger)
    {
        _time = time;
        _logger = logger;
        // Held in a field: a timer nothing references may be collected before it fires.
        _flush = time.CreateTimer(static state =>
        {
            var self = (EdgeConnectionLimiter)state!;
            Volatile.Write(ref self._flushArmed, 0);
            self.TryReport();
        }, this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        FileLimit = fileLimit;
        MaxConnections = EdgeConnectionLimits.Resolve(options, fileLimit);
        MaxConnectionsPerAddress = options.MaxConnectionsPerAddress;
        var room = EdgeConnectionLimits.Automatic(fileLimit, options.FileLimitShare);
        if (fileLimit is { } limit && MaxConnections > room)
        {
            LogLimitAboveFiles(_logger, MaxConnections, limit, room);
        }
        else if (fileLimit is { } low && options.MaxConnections is null && MaxConnections < EdgeConnectionLimits.Default)
        {
            LogLoweredByFiles(_logger, MaxConnections, low);
        }
    }

    /// <summary>The process's file limit the automatic limit was worked out from; null when unknown.</summary>
    public long? FileLimit { get; }

    public int MaxConnections { get; }

    public int MaxConnectionsPerAddress { get; }

    /// <summary>Connections open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections refused since start because <see cref="MaxConnections"/> were open.</summary>
    public long RefusedAtLimit => Interlocked.Read(ref _refusedLimit);

    /// <summary>Connections refused since start because their address had <see cref="MaxConnectionsPerAddress"/> open.</summary>
    public long RefusedPerAddress => Interlocked.Read(ref _refusedAddress);

    /// <summary>Connections refused since start because the process was running out of file descriptors.</summary>
    public long RefusedForFiles => Interlocked.Read(ref _refusedFiles);

    /// <summary>HTTP and undecided connections open now from <paramref name="address"/>.</summary>
    public int OpenFrom(IPAddress address)
    {
        lock (_lock) return _perAddress.GetValueOrDefault(Normalize(address));
    }

    /// <summary>The connection middleware: counts the connection, or closes it when a limit is reached.</summary>
    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var address = connection.RemoteEndPoint is IPEndPoint ip ? Normalize(ip.Address) : null;
        var refusal = TryEnter(address);
        if (refusal is not null)
        {
            connection.Abort(new ConnectionAbortedException(refusal));
            Report(refusal);
            return;
        }
        var lease = new ConnectionLease(this, address);
        connection.Features.Set(lease);
        try
        {
            await next(connection);
        }
        finally
        {
            lease.Release();
        }
    }

    /// <summary>
    /// Counts and reports a connection the listener closed, or could not accept, because the
    /// process is running out of file descriptors; <paramref name="descriptor"/> is the one it got, if any.
    /// </summary>
    internal void RefuseForDescriptors(long? descriptor)
    {
        Interlocked.Increment(ref _refusedFiles);
        Report(descriptor is { } d
            ? $"the process is running out of file descriptors (the connection got number {d} of {FileLimit}, and the last {EdgeConnectionLimits.Headroom} are kept free)"
            : "the process is out of file descriptors");
    }

    /// <summary>
    /// The listener's cheap first look, before Kestrel makes a connection of the socket: true (the
    /// refusal counted and reported) when <see cref="MaxConnections"/> are open already. Under a
    /// flood this keeps refusals to an accept and a close; the middleware still checks exactly.
    /// </summary>
    internal bool RefuseIfFull()
    {
        if (Volatile.Read(ref _open) < MaxConnections) return false;
        Interlocked.Increment(ref _refusedLimit);
        Report($"{MaxConnections} connections were open, the most allowed");
        return true;
    }

    private string? TryEnter(IPAddress? address)
    {
        lock (_lock)
        {
            if (_open >= MaxConnections)
            {
                Interlocked.Increment(ref _refusedLimit);
                return $"{MaxConnections} connections were open, the most allowed";
            }
            if (address is not null)
            {
                var n = _perAddress.GetValueOrDefault(address);
                if (n >= MaxConnectionsPerAddress)
                {
                    Interlocked.Increment(ref _refusedAddress);
                    return $"{n} connections were open from {address}, the most allowed from one address";
                }
                _perAddress[address] = n + 1;
            }
            Volatile.Write(ref _open, _open + 1);
            return null;
        }
    }

    private void Leave(IPAddress? address, bool connection)
    {
        lock (_lock)
        {
            if (address is not null && _perAddress.TryGetValue(address, out var n))
            {
                if (n <= 1) _perAddress.Remove(address);
                else _perAddress[address] = n - 1;
            }
            if (connection) Volatile.Write(ref _open, _open - 1);
        }
    }

    private void Report(string refusal)
    {
        Interlocked.Increment(ref _unreported);
        Volatile.Write(ref _latestRefusal, refusal);
        if (!TryReport() && Interlocked.Exchange(ref _flushArmed, 1) == 0)
        {
            // Refusals that came too soon after a report are reported once the interval has passed,
            // even if none follow them.
            _flush.Change(LogInterval, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Logs the refusals not yet reported, unless the last report was less than <see cref="LogInterval"/> ago.</summary>
    private bool TryReport()
    {
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastReport);
        if (last != long.MinValue && _time.GetElapsedTime(last, now) < LogInterval) return false;
        if (Interlocked.CompareExchange(ref _lastReport, now, last) != last) return false;
        var count = Interlocked.Exchange(ref _unreported, 0);
        if (count > 0) LogRefused(_logger, count, Volatile.Read(ref _latestRefusal)!);
        return true;
    }

    public void Dispose() => _flush.Dispose();

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <summary>A counted connection's place in the limiter, kept in its features.</summary>
    internal sealed class ConnectionLease(EdgeConnectionLimiter limiter, IPAddress? address)
    {
        private int _addressCounted = address is null ? 0 : 1;
        private int _released;

        /// <summary>The connection no longer counts towards its address (it became a tunnel); it still counts overall.</summary>
        public void LeaveAddressCount()
        {
            if (Interlocked.Exchange(ref _addressCounted, 0) == 1) limiter.Leave(address, connection: false);
        }

        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) == 1) return;
            var counted = Interlocked.Exchange(ref _addressCounted, 0) == 1;
            limiter.Leave(counted ? address : null, connection: true);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused {Count} connection(s) since the last report; the latest because {Reason}")]
    private static partial void LogRefused(ILogger logger, int count, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The edge may hold {Connections} connections, but the file limit of {FileLimit} leaves room for about {Room}: raise the limit (ulimit -n, LimitNOFILE) or beyond it connections fail for want of file descriptors")]
    private static partial void LogLimitAboveFiles(ILogger logger, int connections, long fileLimit, int room);

    [LoggerMessage(Level = LogLevel.Information, Message = "The edge holds at most {Connections} connections: that is what the file limit of {FileLimit} leaves room for (raise it with ulimit -n or LimitNOFILE for more)")]
    private static partial void LogLoweredByFiles(ILogger logger, int connections, long fileLimit);
}
