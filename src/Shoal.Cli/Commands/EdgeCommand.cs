using System.CommandLine;
using Shoal.Edge;
using Shoal.Edge.Control;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal edge</c>: a standalone edge fed by the control plane's route-table stream.</summary>
public sealed class EdgeCommand : Command
{
    private static readonly Option<string> s_server = new("--server") { Description = "Control plane API address", DefaultValueFactory = _ => "http://127.0.0.1:7400" };
    private static readonly Option<string?> s_key = new("--key") { Description = "Edge key (env SHOAL_EDGE_KEY); the server keeps it in edge.key in its data dir" };
    private static readonly Option<string?> s_keyFile = new("--key-file") { Description = "Read the edge key from this file" };
    private static readonly Option<string?> s_metricsKeyFile = new("--metrics-key-file")
    {
        Description = "File with the key scrapers send to read /metrics (env SHOAL_METRICS_KEY); without one /metrics refuses everybody. shoal server keeps its own in metrics.key in its data dir",
    };
    private static readonly Option<string> s_listen = new("--listen") { Description = "Address to serve requests and tunnels on (host:port)", DefaultValueFactory = _ => "127.0.0.1:8080" };
    private static readonly Option<string> s_domain = new("--domain") { Description = "Domain for host-based routing: {cluster}.{domain}", DefaultValueFactory = _ => "localhost" };
    private static readonly Option<string?> s_redis = new("--redis")
    {
        Description = "Redis the edges share for the gateway's rate limits and budgets (host:port, a StackExchange.Redis configuration); default: counters in this edge",
    };
    private static readonly Option<string?> s_name = new("--name") { Description = "This edge's name in usage records and metrics (default: the host name)" };
    private static readonly Option<string?> s_advertise = new("--advertise") { Description = "URL agents open tunnels to (default: the listen address)" };
    private static readonly Option<string?> s_tlsCert = new("--tls-cert") { Description = "PEM certificate file: serve HTTPS (needs --tls-key)" };
    private static readonly Option<string?> s_tlsKey = new("--tls-key") { Description = "PEM private key file of --tls-cert" };
    private static readonly Option<string?> s_tlsPfx = new("--tls-pfx") { Description = "PKCS#12 (PFX) file with the certificate and key, instead of PEM files" };
    private static readonly Option<string?> s_tlsPassword = new("--tls-password") { Description = "Password of the PFX file or encrypted PEM key (or set SHOAL_EDGE_TLS_PASSWORD)" };
    private static readonly Option<int?> s_maxConnections = CommonOptions.CreateIntOption("--max-connections",
        "Most connections held at once (default 10000, lowered to what the file limit allows)", 1);
    private static readonly Option<int?> s_maxPerAddress = CommonOptions.CreateIntOption("--max-connections-per-address", "Most HTTP connections from one IP address (default 2000)", 1);
    private static readonly Option<int?> s_maxTunnels = CommonOptions.CreateIntOption("--max-tunnels-per-node", "Most tunnels one node holds to this edge (default 256)", 1);
    private static readonly Option<TimeSpan?> s_undecided = CommonOptions.CreateDurationOption("--undecided-timeout",
        "A new connection that sends nothing this long is closed (default 5s)", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
    private static readonly Option<TimeSpan?> s_firstByte = CommonOptions.CreateDurationOption("--first-byte-timeout",
        "An attempt without response headers this long is cut and retried on another replica, for clusters that set no --first-byte-timeout (default none; 0: none)", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<string?> s_spoolDir = new("--spool-dir")
    {
        Description = "Directory of the usage ledger's spool: rows are written here before they are shipped to the control plane (default ~/.shoal/edge-spool/{name}-{port}; one edge per directory)",
    };
    private static readonly Option<LogLevel> s_logLevel = new("--log-level") { Description = "Minimum log level", DefaultValueFactory = _ => LogLevel.Information };

    private readonly CliContext _context;

    public EdgeCommand(CliContext context)
        : base("edge", "Run a standalone edge: routes requests to replicas, takes tunnels from agents, gets its routes from the control plane")
    {
        _context = context;
        Options.Add(s_server);
        Options.Add(s_key);
        Options.Add(s_keyFile);
        Options.Add(s_listen);
        Options.Add(s_domain);
        Options.Add(s_advertise);
        Options.Add(s_redis);
        Options.Add(s_name);
        Options.Add(s_tlsCert);
        Options.Add(s_tlsKey);
        Options.Add(s_tlsPfx);
        Options.Add(s_tlsPassword);
        Options.Add(s_maxConnections);
        Options.Add(s_maxPerAddress);
        Options.Add(s_maxTunnels);
        Options.Add(s_undecided);
        Options.Add(s_firstByte);
        Options.Add(s_metricsKeyFile);
        Options.Add(s_spoolDir);
        Options.Add(s_logLevel);
        SetAction(ExecuteAsync);
    }

    /// <summary>The key in <paramref name="file"/> when one is named, else <paramref name="fallback"/>; false (said why) when the file cannot be read.</summary>
    private bool TryReadKey(string? file, string what, string? fallback, out string? key)
    {
        key = fallback;
        if (file is null) return true;
        try
        {
            key = File.ReadAllText(file).Trim();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _context.Interaction.DisplayError($"cannot read the {what} file {file}: {e.Message}");
            return false;
        }
    }

    /// <summary><c>~/.shoal/edge-spool/{name}-{port}</c>: each edge on a host keeps its own spool.</summary>
    private string DefaultSpoolDirectory(EdgeOptions edge)
    {
        var name = string.IsNullOrWhiteSpace(edge.Name) ? Environment.MachineName : edge.Name;
        var port = EdgeListenAddress.TryParse(edge.Listen, out var listen) ? listen.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) : "edge";
        var safe = string.Concat(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
        return Path.Combine(_context.HomeDirectory ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".shoal", "edge-spool", $"{safe}-{port}");
    }

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        if (!TryReadKey(result.GetValue(s_keyFile), "edge key", result.GetValue(s_key) ?? Environment.GetEnvironmentVariable("SHOAL_EDGE_KEY"), out var key)
            || !TryReadKey(result.GetValue(s_metricsKeyFile), "metrics key", Environment.GetEnvironmentVariable("SHOAL_METRICS_KEY"), out var metricsKey))
        {
            return ExitCodes.InvalidInput;
        }
        var options = new EdgeServerOptions
        {
            Server = result.GetValue(s_server)!,
            Key = key,
            AdvertiseUrl = result.GetValue(s_advertise),
            LogLevel = result.GetValue(s_logLevel),
            Edge = new EdgeOptions
            {
                Listen = result.GetValue(s_listen)!,
                Domain = result.GetValue(s_domain)!,
                MetricsKey = metricsKey,
                TlsCertificatePath = result.GetValue(s_tlsCert),
                TlsKeyPath = result.GetValue(s_tlsKey),
                TlsPfxPath = result.GetValue(s_tlsPfx),
                TlsPassword = result.GetValue(s_tlsPassword) ?? Environment.GetEnvironmentVariable("SHOAL_EDGE_TLS_PASSWORD"),
                MaxConnections = result.GetValue(s_maxConnections),
                Redis = result.GetValue(s_redis),
                Name = result.GetValue(s_name),
            },
        };
        options.Edge.SpoolDirectory = result.GetValue(s_spoolDir) ?? DefaultSpoolDirectory(options.Edge);
        if (result.GetValue(s_maxPerAddress) is { } perAddress) options.Edge.MaxConnectionsPerAddress = perAddress;
        if (result.GetValue(s_maxTunnels) is { } tunnels) options.Edge.MaxTunnelsPerNode = tunnels;
        if (result.GetValue(s_undecided) is { } undecided) options.Edge.UndecidedConnectionTimeout = undecided;
        if (result.GetValue(s_firstByte) is { } firstByte) options.Edge.FirstByteTimeout = firstByte;
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            _context.Interaction.DisplayError("invalid edge options", errors);
            return ExitCodes.InvalidInput;
        }

        // This process is an edge and nothing else: socket completions run inline (see there why).
        EdgeHostExtensions.PreferInlineSocketCompletions();
        EdgeServer edge;
        try
        {
            edge = await EdgeServer.StartAsync(options, ct: ct);
        }
        catch (Exception e) when (e is IOException or EdgeConfigurationException or InvalidOperationException or ArgumentException
            or System.Net.Sockets.SocketException or System.Security.Cryptography.CryptographicException)
        {
            _context.Interaction.DisplayError($"the edge could not start: {e.Message}");
            return ExitCodes.Failure;
        }

        await using (edge)
        {
            _context.Interaction.DisplayMessage($"shoal edge: serving on {edge.Address}, routes from {options.Server}");
            var stopped = new TaskCompletionSource();
            await using var registration = ct.Register(() => stopped.TrySetResult());
            await Task.WhenAny(edge.ControlLink, stopped.Task);
            if (edge.ControlLink is { IsFaulted: true, Exception.InnerException: EdgeConfigurationException config })
            {
                _context.Interaction.DisplayError(config.Message);
                return ExitCodes.InvalidInput;
            }
        }
        return ExitCodes.Success;
    }
}
