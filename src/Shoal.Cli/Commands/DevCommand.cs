using System.CommandLine;
using Shoal.Agent;
using Shoal.Core.Clusters;
using Shoal.Cli.Client;
using Shoal.Contracts;
using Shoal.ControlPlane;
using Shoal.ControlPlane.Identity;
using Shoal.Hosting;
using Shoal.Server;

namespace Shoal.Cli.Commands;

/// <summary>
/// <c>shoal dev</c>: everything on one machine. Server and edge, three local agents with simulated
/// GPUs on the process runtime, and a <c>demo</c> cluster running the simulator.
/// </summary>
public sealed class DevCommand : Command
{
    /// <summary>The dev node layout: name and simulated GPUs.</summary>
    public static readonly (string Name, string Gpus)[] Nodes = [("node-1", "rtx-4090:2"), ("node-2", "rtx-4090:1"), ("node-3", "rtx-3090:1")];

    private static readonly Option<string> s_listen = new("--listen") { Description = "API address (host:port)", DefaultValueFactory = _ => "127.0.0.1:7400" };
    private static readonly Option<string> s_edgeListen = new("--edge-listen") { Description = "Edge address (host:port)", DefaultValueFactory = _ => "127.0.0.1:8080" };
    private static readonly Option<string> s_dataDir = new("--data-dir") { Description = "Where dev keeps its store and agent identities", DefaultValueFactory = _ => Path.Combine(".shoal", "dev") };
    private static readonly Option<bool> s_noDemo = new("--no-demo") { Description = "Do not deploy the demo cluster" };
    private static readonly Option<LogLevel> s_logLevel = new("--log-level") { Description = "Minimum log level", DefaultValueFactory = _ => LogLevel.Warning };

    private readonly CliContext _context;

    public DevCommand(CliContext context)
        : base("dev", "Run server, edge, three simulated GPU nodes and a demo cluster on this machine")
    {
        _context = context;
        Options.Add(s_listen);
        Options.Add(s_edgeListen);
        Options.Add(s_dataDir);
        Options.Add(s_noDemo);
        Options.Add(s_logLevel);
        SetAction(ExecuteAsync);
    }

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        var ui = _context.Interaction;
        var dataDir = Path.GetFullPath(result.GetValue(s_dataDir)!);
        var logLevel = result.GetValue(s_logLevel);
        var options = new ServerOptions
        {
            Listen = result.GetValue(s_listen)!,
            EdgeListen = result.GetValue(s_edgeListen)!,
            DataDir = Path.Combine(dataDir, "server"),
            LogLevel = logLevel,
            // Local use: the agents run here, on simulated GPUs.
            AllowLoopbackNodes = true,
            AllowSimulatedGpus = true,
            // Ctrl-C stops the agents first (each says goodbye), then the server: not all at once.
            StoppedByHost = true,
        };
        var errors = ShoalServer.Validate(options);
        if (errors.Count > 0)
        {
            ui.DisplayError("invalid options", errors);
            return ExitCodes.InvalidInput;
        }

        using var loggerFactory = LoggerFactory.Create(b => b.AddShoalLogging(logLevel));

        ShoalServer server;
        try
        {
            server = await ShoalServer.StartAsync(options, ct: ct);
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException)
        {
            ui.DisplayError($"the server could not start: {e.Message}");
            return ExitCodes.Failure;
        }

        await using (server)
        {
            using var agentsStop = new CancellationTokenSource();
            var agents = new List<Task>();
            try
            {
                var operatorKey = ReadOperatorKey(options.DataDir, server);
                using var client = new ShoalClient(server.ApiAddress, operatorKey);
                var needToken = Nodes.Any(n => !File.Exists(Path.Combine(dataDir, n.Name, "node.json")));
                var token = needToken
                    ? (await client.CreateTokenAsync(new CreateTokenRequest { Uses = Nodes.Length, TtlSeconds = 600, Description = "shoal dev", Labels = [ClusterSpec.TrustedLabel] }, ct)).Token
                    : null;
                foreach (var (name, gpus) in Nodes)
                {
                    var agentOptions = new AgentOptions
                    {
                        Server = server.ApiAddress.ToString(),
                        DataDir = Path.Combine(dataDir, name),
                        Token = token,
                        Name = name,
                        SimulateGpus = gpus,
                        EnableProcessRuntime = true,
                        Runtime = "process",
                        ReconnectMin = TimeSpan.FromMilliseconds(200),
                        StopGracePeriod = TimeSpan.FromSeconds(3),
                    };
                    agents.Add(Task.Run(() => AgentHost.RunAsync(agentOptions, loggerFactory, TimeProvider.System, agentsStop.Token), CancellationToken.None));
                }

                await WaitAsync(async () => (await client.ListNodesAsync(ct)).Count(n => n.State == NodeState.Ready) >= Nodes.Length, agents, ct);
                ClientConfig.SaveWithKey(server.ApiAddress.ToString().TrimEnd('/'), operatorKey);
                var demoKeyFile = Path.Combine(dataDir, "demo.key");
                var demoKey = await DemoKeyAsync(client, server, demoKeyFile, ct);

                if (!result.GetValue(s_noDemo))
                {
                    var existing = await client.ListClustersAsync(ct);
                    if (!existing.Any(c => c.Name == "demo"))
                    {
                        await client.CreateClusterAsync(new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 2 }, ct);
                    }
                    await WaitAsync(async () => (await client.GetClusterAsync("demo", ct)).ReadyReplicas >= 1, agents, ct);
                }

                var edge = server.EdgeAddress!.ToString().TrimEnd('/');
                ui.DisplaySuccess($"Shoal is running: API {server.ApiAddress.ToString().TrimEnd('/')}, edge {edge}, {Nodes.Length} nodes");
                if (!result.GetValue(s_noDemo))
                {
                    ui.DisplayMessage($"endpoint: {edge}/c/demo  (or http://demo.localhost:{server.EdgeAddress.Port})");
                    ui.DisplayMessage($"endpoint key (also in {demoKeyFile}): {demoKey}");
                    ui.DisplayMessage("try:");
                    ui.DisplayMessage($"  curl -s {edge}/c/demo/v1/chat/completions -H \"Authorization: Bearer $(cat {demoKeyFile})\" -H 'Content-Type: application/json' -d '{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'");
                    ui.DisplayMessage("  shoal status demo");
                }
                ui.DisplayHint("Ctrl-C stops everything");
                await Task.WhenAny(Task.Delay(Timeout.Infinite, ct), Task.WhenAny(agents));
                if (!ct.IsCancellationRequested)
                {
                    ui.DisplayError("an agent stopped unexpectedly; shutting down");
                    return ExitCodes.Failure;
                }
                return ExitCodes.Success;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return ExitCodes.Success;
            }
            catch (AgentConfigurationException e)
            {
                ui.DisplayError(e.Message);
                return ExitCodes.Failure;
            }
            finally
            {
                await agentsStop.CancelAsync();
                try
                {
                    await Task.WhenAll(agents);
                }
                catch (Exception)
                {
                    // Agents report their own failures; shutting down goes on regardless.
                }
            }
        }
    }

    /// <summary>The operator key the server wrote on its first start (dev keeps its data dir, so it is there on later starts too).</summary>
    private static string ReadOperatorKey(string serverDataDir, ShoalServer server)
    {
        var path = server.OperatorKeyFile ?? Path.Combine(serverDataDir, ApiKeyDirectory.OperatorKeyFileName);
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"cannot read the operator key {path} ({e.Message}); delete the dev data dir to start afresh", e);
        }
    }

    /// <summary>The endpoint key for the demo cluster: the one in <paramref name="path"/> while the server still accepts it, else a new one written there (0600).</summary>
    private static async Task<string> DemoKeyAsync(ShoalClient client, ShoalServer server, string path, CancellationToken ct)
    {
        var directory = server.Services.GetRequiredService<ApiKeyDirectory>();
        if (File.Exists(path) && File.ReadAllText(path).Trim() is { Length: > 0 } existing
            && directory.Find(existing) is { Role: ApiKeyRoles.Endpoint } known && known.IsValidAt(DateTimeOffset.UtcNow))
        {
            return existing;
        }
        var created = await client.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "demo", Role = ApiKeyRoles.Endpoint, Project = ApiKeyDirectory.DefaultProject }, ct);
        SecretFile.Write(path, created.Key);
        return created.Key;
    }

    private static async Task WaitAsync(Func<Task<bool>> done, List<Task> agents, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!await done())
        {
            if (agents.FirstOrDefault(a => a.IsFaulted) is { } failed) await failed;
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException("dev did not become ready within 60 s; run with --log-level Information to see why");
            await Task.Delay(100, ct);
        }
    }
}
