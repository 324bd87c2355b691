using System.CommandLine;
using Shoal.Agent;
using Shoal.Hosting;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal agent</c>: the node agent on a GPU machine.</summary>
public sealed class AgentCommand : Command
{
    private static readonly Option<string?> s_server = new("--server") { Description = "Control plane address (default: the one saved in node.json, else http://127.0.0.1:7400)" };
    private static readonly Option<string?> s_token = new("--token") { Description = "Provisioning token, needed only the first time (see `shoal tokens create`); default $SHOAL_TOKEN. Other local users can read argv: prefer --token-file or $SHOAL_TOKEN" };
    private static readonly Option<string?> s_tokenFile = new("--token-file") { Description = "File holding the provisioning token (read only while the node has no identity)", HelpName = "path" };
    private static readonly Option<string[]> s_allowEnv = new("--allow-env") { Description = "Process runtime: let clusters set this env name although the built-in rule refuses it (LD_*, PYTHON*, PERL*, NODE_OPTIONS, DOTNET_*, CORECLR_*, BROWSER, PATH, HOME, SHELL, IFS, lower-case names); repeatable", HelpName = "name", AllowMultipleArgumentsPerToken = false };
    private static readonly Option<bool> s_allowHostNetwork = new("--allow-host-network") { Description = "Allow --docker-network host. WARNING: every replica then shares this host's network, its loopback included: it reaches this agent, the Docker engine's TCP socket, local databases and other clusters' replicas" };
    private static readonly Option<bool> s_writableRoot = new("--docker-writable-root") { Description = "Give containers a writable root file system (default: read-only, with 1 GiB tmpfs at /tmp and /root/.cache)" };
    private static readonly Option<string?> s_dockerUser = new("--docker-user") { Description = "Run every container's workload as this uid[:gid], e.g. 65534:65534 (default: the image's user)", HelpName = "uid[:gid]" };
    private static readonly Option<string?> s_dataDir = new("--data-dir") { Description = "Where node.json and replica logs are kept" };
    private static readonly Option<string?> s_name = new("--name") { Description = "Node name asked for at registration (default: host name)" };
    private static readonly Option<string?> s_simulateGpus = new("--simulate-gpus") { Description = "Declare simulated GPUs instead of detecting them, e.g. rtx-4090:2" };
    private static readonly Option<string> s_address = new("--address") { Description = "Address edges connect to in direct mode", DefaultValueFactory = _ => "127.0.0.1" };
    private static readonly Option<bool> s_direct = new("--direct") { Description = "Direct mode: edges connect to --address; by default the node keeps tunnels open to the edges and needs no inbound port" };
    private static readonly Option<int> s_tunnels = new("--tunnels-per-edge") { Description = "Idle tunnels kept open to each edge", DefaultValueFactory = _ => 4 };
    private static readonly Option<bool> s_plainTunnels = new("--allow-plain-tunnels")
    {
        Description = "Also open tunnels to http edges across the network. WARNING: the tunnel credential and every request then cross the network in clear; by default only https edges (and edges on this machine) get tunnels",
    };
    private static readonly Option<bool> s_process = new("--enable-process-runtime") { Description = "Run allow-listed local commands as replicas (shoal/sim is built in). For trusted images only: they run as this user, outside any container" };
    private static readonly Option<bool> s_keepReplicas = new("--keep-replicas-on-exit") { Description = "Process runtime: leave replicas running when the agent stops, for the next agent to re-adopt (replicas of an agent that died are re-adopted anyway)" };
    private static readonly Option<string[]> s_processImage = new("--process-image") { Description = "Allow an image on the process runtime: IMAGE=COMMAND (repeatable)", AllowMultipleArgumentsPerToken = false };
    private static readonly Option<string> s_runtime = new("--runtime") { Description = "auto (docker when an engine answers, plus process when enabled), docker (engine required) or process", DefaultValueFactory = _ => "auto" };
    private static readonly Option<string?> s_dockerHost = new("--docker-host") { Description = "Docker Engine API address (default: DOCKER_HOST, else unix:///var/run/docker.sock)" };
    private static readonly Option<string> s_dockerNetwork = new("--docker-network") { Description = "bridge (ports published on 127.0.0.1) or host (PORT set; needs --allow-host-network: replicas share the host's loopback)", DefaultValueFactory = _ => "bridge" };
    private static readonly Option<string?> s_ociRuntime = new("--oci-runtime") { Description = "OCI runtime for every container, e.g. kata-runtime or runsc (default: the engine's)" };
    private static readonly Option<TimeSpan?> s_reconnectMax = CommonOptions.CreateDurationOption("--reconnect-max",
        "Longest wait between attempts to reach the control plane (default 30s; the wait starts at 1s and doubles, ±50 % jitter)", TimeSpan.FromSeconds(1), TimeSpan.FromHours(1));
    private static readonly Option<LogLevel> s_logLevel = new("--log-level") { Description = "Minimum log level", DefaultValueFactory = _ => LogLevel.Information };

    /// <summary>The environment variable that may hold the provisioning token.</summary>
    public const string TokenVariable = "SHOAL_TOKEN";

    private readonly CliContext _context;

    public AgentCommand(CliContext context)
        : base("agent", "Run the node agent: registers with the control plane and runs the replicas it is given")
    {
        _context = context;
        Options.Add(s_server);
        Options.Add(s_token);
        Options.Add(s_tokenFile);
        Options.Add(s_dataDir);
        Options.Add(s_name);
        Options.Add(s_simulateGpus);
        Options.Add(s_address);
        Options.Add(s_direct);
        Options.Add(s_tunnels);
        Options.Add(s_plainTunnels);
        Options.Add(s_process);
        Options.Add(s_processImage);
        Options.Add(s_keepReplicas);
        Options.Add(s_allowEnv);
        Options.Add(s_runtime);
        Options.Add(s_dockerHost);
        Options.Add(s_dockerNetwork);
        Options.Add(s_allowHostNetwork);
        Options.Add(s_writableRoot);
        Options.Add(s_dockerUser);
        Options.Add(s_ociRuntime);
        Options.Add(s_reconnectMax);
        Options.Add(s_logLevel);
        SetAction(ExecuteAsync);
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        var options = new AgentOptions
        {
            Server = result.GetValue(s_server),
            // $SHOAL_TOKEN only when no token is given on the command line.
            Token = result.GetValue(s_token) ?? (result.GetValue(s_tokenFile) is null ? NonEmpty(_context.GetEnvironmentVariable(TokenVariable)) : null),
            TokenFile = result.GetValue(s_tokenFile),
            DataDir = result.GetValue(s_dataDir),
            Name = result.GetValue(s_name),
            SimulateGpus = result.GetValue(s_simulateGpus),
            Address = result.GetValue(s_address)!,
            Direct = result.GetValue(s_direct),
            TunnelsPerEdge = result.GetValue(s_tunnels),
            AllowPlainTunnels = result.GetValue(s_plainTunnels),
            EnableProcessRuntime = result.GetValue(s_process),
            KeepReplicasOnExit = result.GetValue(s_keepReplicas),
            Runtime = result.GetValue(s_runtime)!,
            DockerHost = result.GetValue(s_dockerHost),
            DockerNetwork = result.GetValue(s_dockerNetwork)!,
            AllowHostNetwork = result.GetValue(s_allowHostNetwork),
            DockerWritableRoot = result.GetValue(s_writableRoot),
            DockerUser = result.GetValue(s_dockerUser),
            AllowEnv = new HashSet<string>(result.GetValue(s_allowEnv) ?? [], StringComparer.Ordinal),
            OciRuntime = result.GetValue(s_ociRuntime),
        };
        if (result.GetValue(s_reconnectMax) is { } reconnectMax) options.ReconnectMax = reconnectMax;
        foreach (var entry in result.GetValue(s_processImage) ?? [])
        {
            var eq = entry.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == entry.Length - 1)
            {
                _context.Interaction.DisplayError($"--process-image '{entry}' must be IMAGE=COMMAND");
                return ExitCodes.InvalidInput;
            }
            options.ProcessImages[entry[..eq]] = entry[(eq + 1)..];
        }

        using var loggerFactory = LoggerFactory.Create(b => b.AddShoalLogging(result.GetValue(s_logLevel)));
        try
        {
            await AgentHost.RunAsync(options, loggerFactory, TimeProvider.System, ct);
            return ExitCodes.Success;
        }
        catch (AgentConfigurationException e)
        {
            _context.Interaction.DisplayError(e.Message);
            return ExitCodes.InvalidInput;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return ExitCodes.Success;
        }
    }
}
