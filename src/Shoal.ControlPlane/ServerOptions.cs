using Shoal.Hosting;

namespace Shoal.ControlPlane;

/// <summary>Settings of <c>shoal server</c>.</summary>
public sealed class ServerOptions
{
    /// <summary>Address of the REST API and agent gateway. Default <c>127.0.0.1:7400</c>; port 0 picks a free one.</summary>
    public string Listen { get; set; } = "127.0.0.1:7400";

    /// <summary>Address of the in-process edge. Default <c>127.0.0.1:8080</c>.</summary>
    public string EdgeListen { get; set; } = "127.0.0.1:8080";

    /// <summary>Run without the in-process edge.</summary>
    public bool NoEdge { get; set; }

    /// <summary>Directory for the SQLite database. Default <c>./.shoal/server</c>.</summary>
    public string DataDir { get; set; } = Path.Combine(".shoal", "server");

    /// <summary>A PostgreSQL connection string; SQLite in <see cref="DataDir"/> when null.</summary>
    public string? Database { get; set; }

    /// <summary>How often agents send heartbeats. Default 2 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Heartbeats missed before a connected node counts as gone. Default 3.</summary>
    public int MissedHeartbeats { get; set; } = 3;

    /// <summary>How long a disconnected node keeps its replicas before they are replaced. Default 10 s.</summary>
    public TimeSpan NodeGracePeriod { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// After a server start, how long the nodes that were serving before it keep their replicas while
    /// their agents reconnect (at least <see cref="NodeGracePeriod"/>). An agent retries with back-off
    /// up to 30 s, so after a longer server outage the first agents return only that much later: with
    /// the plain grace their replicas would be replaced (and duplicated until they return). Default 40 s.
    /// </summary>
    public TimeSpan RestartGracePeriod { get; set; } = TimeSpan.FromSeconds(40);

    /// <summary>Period of the reconciler's sweep (it also runs on every change). Default 1 s.</summary>
    public TimeSpan ReconcileInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Restarts within <see cref="CrashLoopWindow"/> after which a replica counts as crash-looping and is replaced on another node. Default 3.</summary>
    public int CrashLoopRestarts { get; set; } = 3;

    /// <summary>The window in which <see cref="CrashLoopRestarts"/> restarts make a crash loop. Default 5 min.</summary>
    public TimeSpan CrashLoopWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long new replicas of a cluster avoid a node where one of its replicas crash-looped (while other nodes have room). Default 10 min.</summary>
    public TimeSpan CrashLoopAvoidFor { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Restarts of a new replica during an update after which the update is rolled back. Default 3.</summary>
    public int RolloutFailureRestarts { get; set; } = 3;

    /// <summary>
    /// How long after a drain began (on top of the replica's probe interval, which is how often the
    /// agent reads its load) a report of no work in flight ends the drain: time for the edges to
    /// drop the replica and for requests already sent to show in its metrics. Default 1 s.
    /// </summary>
    public TimeSpan DrainSettle { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Replicas of a spec that never worked replaced for failing, after which the cluster gives up (failed). Default 5.</summary>
    public int MaxFailedAttempts { get; set; } = 5;

    /// <summary>The wait before the replacement after a first failed attempt; doubles with each further one (at most 5 min). Default 10 s.</summary>
    public TimeSpan AttemptBackoff { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Public base URL of the edge, used to show cluster endpoints. Default from <see cref="EdgeListen"/>.</summary>
    public string? PublicEdgeUrl { get; set; }

    /// <summary>
    /// Host names (no port) the API answers besides its listen address: the names clients and agents
    /// use to reach it. Other Host headers are refused (DNS rebinding).
    /// </summary>
    public List<string> AllowedHosts { get; set; } = [];

    /// <summary>Domain for host-based routing at the edge. Default <c>localhost</c>.</summary>
    public string EdgeDomain { get; set; } = "localhost";

    /// <summary>Key standalone edges present (<c>shoal edge --key</c>). Unset: generated once into <c>{DataDir}/edge.key</c>.</summary>
    public string? EdgeKey { get; set; }
    /// <summary>
    /// Key (base64 of 32 bytes) that seals secret env values and registry passwords in the store;
    /// <c>shoal server</c> takes it from <c>SHOAL_SECRETS_KEY</c>. Unset: read from
    /// <see cref="SecretsKeyFile"/>. Every server sharing a database needs the same key.
    /// </summary>
    public string? SecretsKey { get; set; }

    /// <summary>File holding the secrets key. Default <c>{DataDir}/secrets.key</c>, generated (0600) on the first start.</summary>
    public string? SecretsKeyFile { get; set; }

    /// <summary>PEM certificate the edge serves HTTPS with (with <see cref="EdgeTlsKey"/>). Default none: plain HTTP.</summary>
    public string? EdgeTlsCertificate { get; set; }

    /// <summary>PEM private key of <see cref="EdgeTlsCertificate"/>.</summary>
    public string? EdgeTlsKey { get; set; }

    /// <summary>PKCS#12 (PFX) file with the edge's certificate and key, instead of PEM files.</summary>
    public string? EdgeTlsPfx { get; set; }

    /// <summary>Password of <see cref="EdgeTlsPfx"/> (or of an encrypted PEM key).</summary>
    public string? EdgeTlsPassword { get; set; }

    /// <summary>Most connections the in-process edge holds at once. Default null: automatic (see the edge's <c>EdgeOptions.MaxConnections</c>), from half the file limit.</summary>
    public int? EdgeMaxConnections { get; set; }

    /// <summary>Most HTTP connections from one IP address at the in-process edge. Default 2,000.</summary>
    public int EdgeMaxConnectionsPerAddress { get; set; } = 2000;

    /// <summary>Most tunnels one node holds to the in-process edge. Default 256.</summary>
    public int EdgeMaxTunnelsPerNode { get; set; } = 256;

    /// <summary>How long a new edge connection may stay silent before it is closed. Default 5 s.</summary>
    public TimeSpan EdgeUndecidedTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The in-process edge's first-byte cap for clusters that set none (the edge's <c>EdgeOptions.FirstByteTimeout</c>). Default none.</summary>
    public TimeSpan? EdgeFirstByteTimeout { get; set; }

    /// <summary>Redis the in-process edge shares with standalone edges for the gateway's counters (the edge's <c>EdgeOptions.Redis</c>). Default none.</summary>
    public string? EdgeRedis { get; set; }

    /// <summary>
    /// Networks (CIDR, such as <c>10.0.0.0/8</c>) in which a direct-mode node's address must lie for
    /// edges to connect to it. Default none: direct mode reaches no node (tunnels work regardless).
    /// </summary>
    public List<string> NodeNetworks { get; set; } = [];

    /// <summary>
    /// Local use (<c>shoal dev</c>, tests): edges may connect to nodes at loopback or the server's own
    /// addresses (never to the server's own ports). Default false.
    /// </summary>
    public bool AllowLoopbackNodes { get; set; }

    /// <summary>Nodes may report simulated GPUs (<c>shoal agent --simulate-gpus</c>); refused otherwise. Default false.</summary>
    public bool AllowSimulatedGpus { get; set; }

    /// <summary>
    /// The process hosting the server stops it (<c>shoal dev</c>, which stops its agents first): the
    /// server does not stop itself on SIGINT/SIGTERM. Default false (<c>shoal server</c>).
    /// </summary>
    public bool StoppedByHost { get; set; }

    /// <summary>Minimum log level for Shoal's own categories.</summary>
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; set; } = Microsoft.Extensions.Logging.LogLevel.Information;

    /// <summary>Checks the options; returns every problem found. The in-process edge's settings are checked by <c>ShoalServer.Validate</c>, which calls this.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!ListenAddress.TryParse(Listen, out _)) errors.Add($"--listen '{Listen}' is not host:port");
        if (!NoEdge && !ListenAddress.TryParse(EdgeListen, out _)) errors.Add($"--edge-listen '{EdgeListen}' is not host:port");
        if (HeartbeatInterval < TimeSpan.FromMilliseconds(50)) errors.Add("heartbeat interval must be at least 50 ms");
        if (NodeGracePeriod < TimeSpan.Zero) errors.Add("grace period must not be negative");
        if (RestartGracePeriod < TimeSpan.Zero) errors.Add("restart grace period must not be negative");
        if (MissedHeartbeats < 1) errors.Add("missed heartbeats must be at least 1");
        if (CrashLoopRestarts < 1) errors.Add("crash-loop restarts must be at least 1");
        if (RolloutFailureRestarts < 1) errors.Add("rollout failure restarts must be at least 1");
        if (MaxFailedAttempts < 1 || AttemptBackoff < TimeSpan.Zero) errors.Add("failed attempts must be at least 1 and their back-off not negative");
        foreach (var network in NodeNetworks)
        {
            if (!System.Net.IPNetwork.TryParse(network?.Trim(), out _)) errors.Add($"--node-networks '{network}' is not a network such as 10.0.0.0/8");
        }
        if (CrashLoopWindow <= TimeSpan.Zero || CrashLoopAvoidFor < TimeSpan.Zero || DrainSettle < TimeSpan.Zero) errors.Add("crash-loop window must be positive; avoid time and drain settle must not be negative");
        return errors;
    }
}
