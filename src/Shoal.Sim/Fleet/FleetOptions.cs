namespace Shoal.Sim.Fleet;

/// <summary>Settings of <c>shoal sim fleet</c>: how many simulated agents, against which server, and what goes wrong.</summary>
public sealed class FleetOptions
{
    /// <summary>Base URL of the control plane (<c>http://127.0.0.1:7400</c>).</summary>
    public string Server { get; set; } = "http://127.0.0.1:7400";

    /// <summary>How many simulated agents to hold. Default 100.</summary>
    public int Nodes { get; set; } = 100;

    /// <summary>Provisioning token for nodes that have no credentials yet (it needs as many uses as nodes register).</summary>
    public string? Token { get; set; }

    /// <summary>
    /// File of node credentials (one JSON object a line: name, node id, secret): nodes found there connect as
    /// returning nodes; nodes that register are appended. Default none: credentials are kept in memory only.
    /// </summary>
    public string? CredentialsFile { get; set; }

    /// <summary>Prefix of node names: <c>{prefix}-00042</c>. Default <c>fleet</c>.</summary>
    public string NamePrefix { get; set; } = "fleet";

    /// <summary>The one simulated GPU each node reports. Default <c>rtx-4090</c>.</summary>
    public string GpuType { get; set; } = "rtx-4090";

    /// <summary>Heartbeat interval to use instead of the one the server asks for in welcome; null honours the server's.</summary>
    public TimeSpan? HeartbeatInterval { get; set; }

    /// <summary>How long a simulated replica stays starting before it reports ready. Default 1 s.</summary>
    public TimeSpan StartDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The port replicas report they answer on (at 127.0.0.1): point it at a real server (<c>shoal sim</c>) to make them routable. Default 9.</summary>
    public int ReplicaPort { get; set; } = 9;

    /// <summary>Nodes dropped per minute (each returns after <see cref="ChurnDownTime"/>). Default 0.</summary>
    public double ChurnPerMinute { get; set; }

    /// <summary>How long a churned node stays away. Default 20 s.</summary>
    public TimeSpan ChurnDownTime { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>Nodes whose sockets are closed at once, <see cref="KillAfter"/> after the start; they do not return. Default 0.</summary>
    public int Kill { get; set; }

    /// <summary>When the kill happens. Default 30 s.</summary>
    public TimeSpan KillAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Nodes that stop sending (heartbeats and acks) without closing, <see cref="SilenceAfter"/> after the start. Default 0.</summary>
    public int Silence { get; set; }

    /// <summary>When the silence begins. Default 30 s.</summary>
    public TimeSpan SilenceAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Connection attempts in flight at once. Default 256.</summary>
    public int ConnectConcurrency { get; set; } = 256;

    /// <summary>How often a stats line is written. Default 5 s.</summary>
    public TimeSpan StatsInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long to run; null runs until stopped.</summary>
    public TimeSpan? Duration { get; set; }

    /// <summary>Checks the values; one message per problem.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Shoal.Contracts.WebSocketAddress.Create(Server, Shoal.Contracts.AgentProtocol.ConnectPath) is null) errors.Add($"--server '{Server}' is not an http(s) URL");
        if (Nodes is < 1 or > 100_000) errors.Add("--nodes must be between 1 and 100000");
        if (string.IsNullOrEmpty(Token) && CredentialsFile is null) errors.Add("give a provisioning token (--token or --token-file) or a credentials file of registered nodes (--credentials)");
        if (Token is { Length: > 256 }) errors.Add("the provisioning token is longer than 256 characters");
        if (!System.Text.RegularExpressions.Regex.IsMatch(NamePrefix, "^[a-z][a-z0-9-]{0,40}$")) errors.Add("--name-prefix must be a lower-case DNS label of at most 41 characters, starting with a letter");
        if (string.IsNullOrWhiteSpace(GpuType) || GpuType.Length > 64) errors.Add("--gpu must be a GPU type such as rtx-4090");
        if (HeartbeatInterval is { } hb && (hb < TimeSpan.FromMilliseconds(100) || hb > TimeSpan.FromMinutes(10))) errors.Add("--heartbeat must be between 100ms and 10m");
        if (StartDelay < TimeSpan.Zero) errors.Add("--start-delay must not be negative");
        if (ReplicaPort is < 1 or > 65535) errors.Add("--replica-port must be between 1 and 65535");
        if (ChurnPerMinute < 0 || ChurnPerMinute > Nodes * 60.0) errors.Add("--churn must be between 0 and 60 times --nodes per minute");
        if (Kill < 0 || Silence < 0 || Kill + Silence > Nodes) errors.Add("--kill and --silence must not be negative and together at most --nodes");
        if (ConnectConcurrency is < 1 or > 100_000) errors.Add("--connect-concurrency must be between 1 and 100000");
        if (StatsInterval < TimeSpan.FromMilliseconds(100)) errors.Add("--stats-interval must be at least 100ms");
        return errors;
    }
}
