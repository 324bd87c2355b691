using System.CommandLine;
using Shoal.ControlPlane;
using Shoal.ControlPlane.Sealing;
using Shoal.Server;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal server</c>: the control plane (REST API, agent gateway, reconciler) and an in-process edge.</summary>
public sealed class ServerCommand : Command
{
    private static readonly Option<string> s_listen = new("--listen") { Description = "API and agent gateway address (host:port)", DefaultValueFactory = _ => "127.0.0.1:7400" };
    private static readonly Option<string> s_edgeListen = new("--edge-listen") { Description = "Edge address (host:port)", DefaultValueFactory = _ => "127.0.0.1:8080" };
    private static readonly Option<bool> s_noEdge = new("--no-edge") { Description = "Do not run an edge in this process" };
    private static readonly Option<string?> s_dataDir = new("--data-dir") { Description = "Directory for the embedded SQLite store (default ./.shoal/server)" };
    private static readonly Option<string?> s_database = new("--database") { Description = "PostgreSQL connection string (\"Host=…;Username=…;Database=…\") instead of SQLite" };
    private static readonly Option<TimeSpan?> s_grace = CommonOptions.CreateDurationOption("--grace-period", "How long a disconnected node keeps its replicas before they are replaced (default 10s)", TimeSpan.Zero, TimeSpan.FromHours(24));
    private static readonly Option<TimeSpan?> s_restartGrace = CommonOptions.CreateDurationOption("--restart-grace-period",
        "After this server starts, how long nodes that were serving keep their replicas while their agents reconnect (default 40s, at least --grace-period)", TimeSpan.Zero, TimeSpan.FromHours(24));
    private static readonly Option<TimeSpan?> s_heartbeat = CommonOptions.CreateDurationOption("--heartbeat-interval", "How often agents report (default 2s)", TimeSpan.FromMilliseconds(50), TimeSpan.FromMinutes(5));
    private static readonly Option<int?> s_maxFailedAttempts = CommonOptions.CreateIntOption("--max-failed-attempts",
        "Attempts of a spec that never worked (replicas replaced for failing before any was ready) after which the cluster is failed (default 5)", 1, 100);
    private static readonly Option<TimeSpan?> s_attemptBackoff = CommonOptions.CreateDurationOption("--attempt-backoff",
        "Wait before the next attempt after a failed one, doubling with each further one up to 5 min (default 10s)", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<int?> s_crashLoopRestarts = CommonOptions.CreateIntOption("--crash-loop-restarts",
        "Restarts within 5 min after which a replica counts as crash-looping and is replaced on another node (default 3)", 1, 100);
    private static readonly Option<string> s_edgeDomain = new("--edge-domain") { Description = "Domain for host-based routing: {cluster}.{domain}", DefaultValueFactory = _ => "localhost" };
    private static readonly Option<string?> s_redis = new("--redis")
    {
        Description = "Redis the in-process edge shares with standalone edges for the gateway's rate limits and budgets (host:port); default: counters in the edge",
    };
    private static readonly Option<string?> s_publicEdgeUrl = new("--public-edge-url") { Description = "Edge URL shown in cluster endpoints (default from --edge-listen)" };
    private static readonly Option<string?> s_edgeKey = new("--edge-key") { Description = "Key standalone edges (shoal edge) present; default: generated once into edge.key in the data dir (env SHOAL_EDGE_KEY)" };
    private static readonly Option<string?> s_secretsKeyFile = new("--secrets-key-file")
    {
        Description = "File with the key that encrypts secret env and registry passwords in the store (default: secrets.key in the data dir, generated once; or set SHOAL_SECRETS_KEY)",
    };
    private static readonly Option<string?> s_edgeTlsCert = new("--edge-tls-cert") { Description = "PEM certificate file: the edge serves HTTPS (needs --edge-tls-key)" };
    private static readonly Option<string?> s_edgeTlsKey = new("--edge-tls-key") { Description = "PEM private key file of --edge-tls-cert" };
    private static readonly Option<string?> s_edgeTlsPfx = new("--edge-tls-pfx") { Description = "PKCS#12 (PFX) file with the edge's certificate and key, instead of PEM files" };
    private static readonly Option<string?> s_edgeTlsPassword = new("--edge-tls-password") { Description = "Password of the PFX file or encrypted PEM key (or set SHOAL_EDGE_TLS_PASSWORD)" };
    private static readonly Option<int?> s_edgeMaxConnections = CommonOptions.CreateIntOption("--edge-max-connections",
        "Most connections the edge holds at once (default 10000, lowered to what half the file limit allows)", 1);
    private static readonly Option<int?> s_edgeMaxPerAddress = CommonOptions.CreateIntOption("--edge-max-connections-per-address", "Most HTTP connections to the edge from one IP address (default 2000)", 1);
    private static readonly Option<int?> s_edgeMaxTunnels = CommonOptions.CreateIntOption("--edge-max-tunnels-per-node", "Most tunnels one node holds to the edge (default 256)", 1);
    private static readonly Option<TimeSpan?> s_edgeUndecided = CommonOptions.CreateDurationOption("--edge-undecided-timeout",
        "A new edge connection that sends nothing this long is closed (default 5s)", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
    private static readonly Option<TimeSpan?> s_edgeFirstByte = CommonOptions.CreateDurationOption("--edge-first-byte-timeout",
        "An attempt without response headers this long is cut and retried on another replica, for clusters that set no --first-byte-timeout (default none; 0: none)", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<string[]> s_nodeNetworks = new("--node-networks")
    {
        Description = "Networks (CIDR, comma-separated or repeated) where direct-mode nodes may be: edges connect to a node's own address only within them (default none: tunnels only)",
    };
    private static readonly Option<bool> s_allowLoopbackNodes = new("--allow-loopback-nodes") { Description = "Local use: edges may connect to nodes at loopback or this machine's addresses (never to the server's own ports)" };
    private static readonly Option<bool> s_allowSimulatedGpus = new("--allow-simulated-gpus") { Description = "Accept nodes that report simulated GPUs (shoal agent --simulate-gpus)" };
    private static readonly Option<LogLevel> s_logLevel = new("--log-level") { Description = "Minimum log level (Trace, Debug, Information, Warning, Error)", DefaultValueFactory = _ => LogLevel.Information };

    private readonly CliContext _context;

    public ServerCommand(CliContext context)
        : base("server", "Run the control plane: REST API, agent gateway, scheduler and reconciler, plus an edge")
    {
        _context = context;
        Options.Add(s_listen);
        Options.Add(s_edgeListen);
        Options.Add(s_noEdge);
        Options.Add(s_dataDir);
        Options.Add(s_database);
        Options.Add(s_grace);
        Options.Add(s_restartGrace);
        Options.Add(s_heartbeat);
        Options.Add(s_maxFailedAttempts);
        Options.Add(s_attemptBackoff);
        Options.Add(s_crashLoopRestarts);
        Options.Add(s_edgeDomain);
        Options.Add(s_publicEdgeUrl);
        Options.Add(s_redis);
        Options.Add(s_edgeKey);
        Options.Add(s_secretsKeyFile);
        Options.Add(s_edgeTlsCert);
        Options.Add(s_edgeTlsKey);
        Options.Add(s_edgeTlsPfx);
        Options.Add(s_edgeTlsPassword);
        Options.Add(s_edgeMaxConnections);
        Options.Add(s_edgeMaxPerAddress);
        Options.Add(s_edgeMaxTunnels);
        Options.Add(s_edgeUndecided);
        Options.Add(s_edgeFirstByte);
        Options.Add(s_nodeNetworks);
        Options.Add(s_allowLoopbackNodes);
        Options.Add(s_allowSimulatedGpus);
        Options.Add(s_logLevel);
        SetAction(ExecuteAsync);
    }

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        var options = new ServerOptions
        {
            Listen = result.GetValue(s_listen)!,
            EdgeListen = result.GetValue(s_edgeListen)!,
            NoEdge = result.GetValue(s_noEdge),
            DataDir = result.GetValue(s_dataDir) ?? Path.Combine(".shoal", "server"),
            Database = result.GetValue(s_database),
            EdgeDomain = result.GetValue(s_edgeDomain)!,
            PublicEdgeUrl = result.GetValue(s_publicEdgeUrl),
            EdgeRedis = result.GetValue(s_redis),
            EdgeKey = result.GetValue(s_edgeKey) ?? Environment.GetEnvironmentVariable("SHOAL_EDGE_KEY"),
            // The key itself only from the environment: a command line is visible to every user of the machine.
            SecretsKey = Environment.GetEnvironmentVariable(SecretsKey.EnvironmentVariable),
            SecretsKeyFile = result.GetValue(s_secretsKeyFile),
            LogLevel = result.GetValue(s_logLevel),
            EdgeTlsCertificate = result.GetValue(s_edgeTlsCert),
            EdgeTlsKey = result.GetValue(s_edgeTlsKey),
            EdgeTlsPfx = result.GetValue(s_edgeTlsPfx),
            EdgeTlsPassword = result.GetValue(s_edgeTlsPassword) ?? Environment.GetEnvironmentVariable("SHOAL_EDGE_TLS_PASSWORD"),
            NodeNetworks = [.. (result.GetValue(s_nodeNetworks) ?? []).SelectMany(n => n.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))],
            AllowLoopbackNodes = result.GetValue(s_allowLoopbackNodes),
            AllowSimulatedGpus = result.GetValue(s_allowSimulatedGpus),
        };
        if (result.GetValue(s_grace) is { } grace) options.NodeGracePeriod = grace;
        if (result.GetValue(s_restartGrace) is { } restartGrace) options.RestartGracePeriod = restartGrace;
        if (result.GetValue(s_heartbeat) is { } hb) options.HeartbeatInterval = hb;
        if (result.GetValue(s_maxFailedAttempts) is { } attempts) options.MaxFailedAttempts = attempts;
        if (result.GetValue(s_attemptBackoff) is { } backoff) options.AttemptBackoff = backoff;
        if (result.GetValue(s_crashLoopRestarts) is { } crashLoop) options.CrashLoopRestarts = crashLoop;
        options.EdgeMaxConnections = result.GetValue(s_edgeMaxConnections);
        if (result.GetValue(s_edgeMaxPerAddress) is { } perAddress) options.EdgeMaxConnectionsPerAddress = perAddress;
        if (result.GetValue(s_edgeMaxTunnels) is { } tunnels) options.EdgeMaxTunnelsPerNode = tunnels;
        if (result.GetValue(s_edgeUndecided) is { } undecided) options.EdgeUndecidedTimeout = undecided;
        if (result.GetValue(s_edgeFirstByte) is { } firstByte) options.EdgeFirstByteTimeout = firstByte;

        var errors = ShoalServer.Validate(options);
        if (errors.Count > 0)
        {
            _context.Interaction.DisplayError("invalid server options", errors);
            return ExitCodes.InvalidInput;
        }

        ShoalServer server;
        try
        {
            server = await ShoalServer.StartAsync(options, ct: ct);
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException or Npgsql.NpgsqlException or System.Net.Sockets.SocketException or System.Security.Cryptography.CryptographicException)
        {
            _context.Interaction.DisplayError($"the server could not start: {e.Message}");
            return ExitCodes.Failure;
        }

        await using (server)
        {
            _context.Interaction.DisplayMessage($"shoal server: API {server.ApiAddress}" + (server.EdgeAddress is null ? "" : $", edge {server.EdgeAddress}"));
            if (server.EdgeKeyFile is { } keyFile) _context.Interaction.DisplayMessage($"standalone edges: shoal edge --server {server.ApiAddress} --key-file {keyFile}");
            try
            {
                await server.WaitForShutdownAsync(ct);
            }
            catch (OperationCanceledException)
            {
            }
        }
        return ExitCodes.Success;
    }
}
