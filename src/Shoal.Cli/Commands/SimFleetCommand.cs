using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Interaction;
using Shoal.Sim.Fleet;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal sim fleet</c>: many simulated agents in one process, for load and failure tests of a control plane.</summary>
public sealed class SimFleetCommand : Command
{
    private const string TokenVariable = "SHOAL_TOKEN";
    private static readonly Option<int?> s_nodes = CommonOptions.CreateIntOption("--nodes", "How many simulated agents (default 100)", 1, 100_000);
    private static readonly Option<string> s_server = new("--server") { Description = "Control plane URL", DefaultValueFactory = _ => "http://127.0.0.1:7400" };
    private static readonly Option<string?> s_token = new("--token") { Description = "Provisioning token with enough uses for the nodes that register (default $SHOAL_TOKEN; prefer --token-file: argv is readable by other users)" };
    private static readonly Option<string?> s_tokenFile = new("--token-file") { Description = "File holding the provisioning token", HelpName = "path" };
    private static readonly Option<string?> s_credentials = new("--credentials")
    {
        Description = "File of node credentials (JSON lines): nodes found there return as registered nodes, nodes that register are added (kept 0600)",
        HelpName = "path",
    };
    private static readonly Option<string?> s_prefix = new("--name-prefix") { Description = "Node names are PREFIX-00000, PREFIX-00001, … (default fleet)" };
    private static readonly Option<string?> s_gpu = new("--gpu") { Description = "The simulated GPU each node has, one per node (default rtx-4090; the server needs --allow-simulated-gpus)" };
    private static readonly Option<TimeSpan?> s_heartbeat = CommonOptions.CreateDurationOption("--heartbeat", "Heartbeat interval instead of the one the server asks for", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
    private static readonly Option<TimeSpan?> s_startDelay = CommonOptions.CreateDurationOption("--start-delay", "How long a replica is starting before it is ready (default 1s)", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<int?> s_replicaPort = CommonOptions.CreateIntOption("--replica-port", "Port replicas report at 127.0.0.1; point it at a `shoal sim` to make them answer (default 9)", 1, 65535);
    private static readonly Option<double?> s_churn = new("--churn") { Description = "Nodes dropped per minute; each returns after --churn-down (default 0)" };
    private static readonly Option<TimeSpan?> s_churnDown = CommonOptions.CreateDurationOption("--churn-down", "How long a churned node stays away (default 20s)", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<int?> s_kill = CommonOptions.CreateIntOption("--kill", "Close this many nodes' sockets at once (they do not return)", 0, 100_000);
    private static readonly Option<TimeSpan?> s_killAfter = CommonOptions.CreateDurationOption("--kill-after", "When to kill them, from the start (default 30s)", TimeSpan.Zero, TimeSpan.FromDays(1));
    private static readonly Option<int?> s_silence = CommonOptions.CreateIntOption("--silence", "Make this many nodes stop sending without closing their sockets", 0, 100_000);
    private static readonly Option<TimeSpan?> s_silenceAfter = CommonOptions.CreateDurationOption("--silence-after", "When they fall silent, from the start (default 30s)", TimeSpan.Zero, TimeSpan.FromDays(1));
    private static readonly Option<int?> s_concurrency = CommonOptions.CreateIntOption("--connect-concurrency", "Connection attempts in flight at once (default 256)", 1, 100_000);
    private static readonly Option<TimeSpan?> s_statsInterval = CommonOptions.CreateDurationOption("--stats-interval", "How often to write a stats line (default 5s)", TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
    private static readonly Option<TimeSpan?> s_duration = CommonOptions.CreateDurationOption("--duration", "Stop after this long (default: run until Ctrl+C)", TimeSpan.FromSeconds(1), TimeSpan.FromDays(30));
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();

    private readonly CliContext _context;

    public SimFleetCommand(CliContext context)
        : base("fleet", "Hold many simulated agents (one process, real agent connections) against a control plane: load, churn and failure tests")
    {
        _context = context;
        foreach (var o in (Option[])[s_nodes, s_server, s_token, s_tokenFile, s_credentials, s_prefix, s_gpu, s_heartbeat, s_startDelay, s_replicaPort,
            s_churn, s_churnDown, s_kill, s_killAfter, s_silence, s_silenceAfter, s_concurrency, s_statsInterval, s_duration, s_output])
        {
            Options.Add(o);
        }
        SetAction(ExecuteAsync);
    }

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        var interaction = _context.Interaction;
        interaction.Format = result.GetValue(s_output);
        var json = interaction.Format == OutputFormat.Json;
        var options = new FleetOptions { Server = result.GetValue(s_server)! };
        if (result.GetValue(s_nodes) is { } nodes) options.Nodes = nodes;
        try
        {
            options.Token = result.GetValue(s_token)
                ?? (result.GetValue(s_tokenFile) is { } file ? File.ReadAllText(file).Trim() : null)
                ?? (_context.GetEnvironmentVariable(TokenVariable) is { Length: > 0 } env ? env : null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            interaction.DisplayError($"cannot read --token-file: {e.Message}");
            return ExitCodes.InvalidInput;
        }
        options.CredentialsFile = result.GetValue(s_credentials);
        if (result.GetValue(s_prefix) is { } prefix) options.NamePrefix = prefix;
        if (result.GetValue(s_gpu) is { } gpu) options.GpuType = gpu;
        options.HeartbeatInterval = result.GetValue(s_heartbeat);
        if (result.GetValue(s_startDelay) is { } startDelay) options.StartDelay = startDelay;
        if (result.GetValue(s_replicaPort) is { } port) options.ReplicaPort = port;
        if (result.GetValue(s_churn) is { } churn) options.ChurnPerMinute = churn;
        if (result.GetValue(s_churnDown) is { } down) options.ChurnDownTime = down;
        if (result.GetValue(s_kill) is { } kill) options.Kill = kill;
        if (result.GetValue(s_killAfter) is { } killAfter) options.KillAfter = killAfter;
        if (result.GetValue(s_silence) is { } silence) options.Silence = silence;
        if (result.GetValue(s_silenceAfter) is { } silenceAfter) options.SilenceAfter = silenceAfter;
        if (result.GetValue(s_concurrency) is { } concurrency) options.ConnectConcurrency = concurrency;
        if (result.GetValue(s_statsInterval) is { } statsInterval) options.StatsInterval = statsInterval;
        options.Duration = result.GetValue(s_duration);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            interaction.DisplayError("invalid fleet options", errors);
            return ExitCodes.InvalidInput;
        }

        void Stats(FleetStats s)
        {
            if (json)
            {
                interaction.WriteRaw(FleetSimulator.ToJson(s) + "\n");
                return;
            }
            interaction.DisplayMessage(string.Create(CultureInfo.InvariantCulture,
                $"{s.ElapsedSeconds,7:F1}s connected {s.Connected}/{s.Nodes} (registered {s.Registered}, lost {s.SessionsLost}, away {s.Away}), " +
                $"hello p99 {Ms(s.HelloP99Ms)}, heartbeats {s.HeartbeatsPerSecond:F0}/s (late p99 {Ms(s.HeartbeatLateP99Ms)}), " +
                $"assignments {s.AssignmentsReceived} acked {s.AcksSent}, replicas {s.ReplicasReady}/{s.Replicas} ready"));
        }

        try
        {
            await FleetSimulator.RunAsync(options, Stats, interaction.DisplayMessage, ct);
        }
        catch (FormatException e)
        {
            interaction.DisplayError(e.Message);
            return ExitCodes.InvalidInput;
        }
        catch (InvalidOperationException e)
        {
            interaction.DisplayError($"the server refused the fleet: {e.Message}");
            return ExitCodes.Failure;
        }
        return ExitCodes.Success;
    }

    private static string Ms(double? value) => value is { } v ? string.Create(CultureInfo.InvariantCulture, $"{v:F1} ms") : "-";
}
