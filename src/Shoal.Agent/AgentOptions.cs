using System.Reflection;

namespace Shoal.Agent;

/// <summary>Settings of <c>shoal agent</c>.</summary>
public sealed class AgentOptions
{
    /// <summary>Default control-plane address.</summary>
    public const string DefaultServer = "http://127.0.0.1:7400";

    /// <summary>
    /// Base URL of the control plane (http, https, ws or wss); the agent connects to
    /// <c>{server}/v1/agent/connect</c> over ws/wss. Default: the server saved in <c>node.json</c>,
    /// else <see cref="DefaultServer"/>.
    /// </summary>
    public string? Server { get; set; }

    /// <summary>
    /// Where the agent keeps <c>node.json</c> and replica logs. Default:
    /// <c>$XDG_DATA_HOME/shoal/agent</c>, else <c>~/.local/share/shoal/agent</c>.
    /// </summary>
    public string? DataDir { get; set; }

    /// <summary>
    /// Provisioning token, used only when no identity is saved in the data dir. Default: none
    /// (<c>shoal agent</c> takes it from <c>--token</c>, else <c>$SHOAL_TOKEN</c>).
    /// </summary>
    public string? Token { get; set; }

    /// <summary>
    /// File holding the provisioning token (surrounding white space ignored), so that it is in no
    /// process's argv; used when <see cref="Token"/> is not set. Default: none.
    /// </summary>
    public string? TokenFile { get; set; }

    /// <summary>Name the node asks for when it registers. Default: the host name.</summary>
    public string? Name { get; set; }

    /// <summary>
    /// Simulated GPUs instead of detected ones, such as <c>rtx-4090:2</c> or
    /// <c>rtx-4090:1,rtx-3090:1</c>. Default: none (detect with nvidia-smi).
    /// </summary>
    public string? SimulateGpus { get; set; }

    /// <summary>Address the edge uses to reach this node's replicas. Default: <c>127.0.0.1</c>.</summary>
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>
    /// Direct mode: edges connect to <see cref="Address"/> themselves. Off by default: the node keeps
    /// tunnels open to every edge and needs no inbound port.
    /// </summary>
    public bool Direct { get; set; }

    /// <summary>Idle tunnels kept open per edge (tunnel mode).</summary>
    public int TunnelsPerEdge { get; set; } = 4;

    /// <summary>Also open tunnels to http edges across the network (in clear); by default only https edges and loopback ones get tunnels.</summary>
    public bool AllowPlainTunnels { get; set; }

    /// <summary>
    /// Which runtimes to use: <c>auto</c> (docker when an engine answers, plus process when
    /// enabled), <c>docker</c> (an engine is required) or <c>process</c> (no engine is probed;
    /// enables the process runtime). Default: <c>auto</c>.
    /// </summary>
    public string Runtime { get; set; } = "auto";

    /// <summary>Docker Engine API address, such as <c>unix:///var/run/docker.sock</c> or <c>tcp://127.0.0.1:2375</c>. Default: <c>DOCKER_HOST</c>, else the local socket.</summary>
    public string? DockerHost { get; set; }

    /// <summary>How containers reach the network: <c>bridge</c> (port published on 127.0.0.1) or <c>host</c> (<c>PORT</c> set). Default: bridge.</summary>
    public string DockerNetwork { get; set; } = "bridge";

    /// <summary>
    /// Allows <see cref="DockerNetwork"/> <c>host</c>, which shares the host's network with every
    /// replica, its loopback included (the agent, the engine's TCP socket, local databases, other
    /// replicas). Default: false, host networking is refused.
    /// </summary>
    public bool AllowHostNetwork { get; set; }

    /// <summary>
    /// Gives containers a writable root file system, for images that write outside <c>/tmp</c> and
    /// the cache path. Default: false: the root is read-only, with size-limited tmpfs scratch.
    /// </summary>
    public bool DockerWritableRoot { get; set; }

    /// <summary>
    /// The user every container's workload runs as, <c>uid[:gid]</c> such as <c>65534:65534</c>, for
    /// images that run as root but do not need to. Default: the image's own user.
    /// </summary>
    public string? DockerUser { get; set; }

    /// <summary>OCI runtime for every container (<c>kata-runtime</c>, <c>runsc</c>). Default: the engine's default.</summary>
    public string? OciRuntime { get; set; }

    /// <summary>Enables the process runtime (allow-listed local commands). Default: false.</summary>
    public bool EnableProcessRuntime { get; set; }

    /// <summary>
    /// Extra images the process runtime may run: image → command line (quotes allowed;
    /// <c>$PORT</c> and the other replica variables are expanded). <c>shoal/sim</c> is built in.
    /// Default: empty.
    /// </summary>
    public Dictionary<string, string> ProcessImages { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Command line that runs <c>shoal sim</c>, for the built-in image <c>shoal/sim</c>. Default:
    /// <see cref="DefaultSimCommand"/> (this executable, or <c>dotnet &lt;entry assembly&gt;</c>, then <c>sim</c>).
    /// </summary>
    public string? SimCommand { get; set; }

    /// <summary>
    /// Env names clusters may give process images beyond the built-in rule (which refuses
    /// <c>LD_*</c>, <c>PYTHON*</c>, <c>PATH</c> and the like, and lower-case names). Default: none.
    /// </summary>
    public HashSet<string> AllowEnv { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Path of nvidia-smi. Default: <c>nvidia-smi</c> (looked up on PATH).</summary>
    public string NvidiaSmiPath { get; set; } = "nvidia-smi";

    /// <summary>First reconnect delay. Default: 1 s.</summary>
    public TimeSpan ReconnectMin { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest reconnect delay. Default: 30 s.</summary>
    public TimeSpan ReconnectMax { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Time allowed for the WebSocket upgrade. Default: 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Stop the replicas when the agent shuts down. Default: true.</summary>
    public bool StopReplicasOnShutdown { get; set; } = true;

    /// <summary>Time a replica gets between SIGTERM and the kill of its process tree. Default: 10 s.</summary>
    public TimeSpan StopGracePeriod { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>First delay before restarting a crashed replica; doubles each time. Default: 1 s.</summary>
    public TimeSpan RestartBackoffMin { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest delay before restarting a crashed replica. Default: 30 s.</summary>
    public TimeSpan RestartBackoffMax { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Size at which a replica log (<c>replicas/&lt;id&gt;.log</c>) is rotated to <c>.log.1</c>. Default: 10 MiB.</summary>
    public long MaxReplicaLogBytes { get; set; } = 10 * 1024 * 1024;

    /// <summary>
    /// Process runtime: leave replicas running when the agent exits, to be re-adopted by the next one
    /// (as the docker runtime always does). Default: false, they stop with the agent. Replicas left by
    /// an agent that died are re-adopted either way.
    /// </summary>
    public bool KeepReplicasOnExit { get; set; }

    /// <summary>The data dir used when <see cref="DataDir"/> is not set.</summary>
    public static string DefaultDataDir
    {
        get
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
            var root = string.IsNullOrEmpty(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "share")
                : xdg;
            return Path.Combine(root, "shoal", "agent");
        }
    }

    /// <summary>
    /// The command line that runs <c>shoal sim</c> from this process: the executable itself, or
    /// <c>dotnet &lt;entry assembly&gt;</c> when running under the dotnet host, followed by <c>sim</c>.
    /// </summary>
    public static string DefaultSimCommand
    {
        get
        {
            var processPath = Environment.ProcessPath ?? "shoal";
            var exe = Path.GetFileNameWithoutExtension(processPath);
            if (string.Equals(exe, "dotnet", StringComparison.OrdinalIgnoreCase))
            {
                var entry = Assembly.GetEntryAssembly()?.Location;
                if (!string.IsNullOrEmpty(entry))
                {
                    return $"{Runtimes.CommandLine.Quote(processPath)} {Runtimes.CommandLine.Quote(entry)} sim";
                }
            }
            return $"{Runtimes.CommandLine.Quote(processPath)} sim";
        }
    }
}
