using System.Net;
using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>What a <see cref="ChaosStack"/> is made of, beyond the defaults (the three existing scenarios use those).</summary>
internal sealed record ChaosStackOptions
{
    /// <summary>How long a disconnected node keeps its replicas (<c>--grace-period</c>).</summary>
    public TimeSpan GracePeriod { get; init; } = ChaosStack.GracePeriod;

    /// <summary>How long nodes that were serving keep their replicas after a server restart (the server's default, passed explicitly).</summary>
    public TimeSpan RestartGracePeriod { get; init; } = TimeSpan.FromSeconds(40);

    /// <summary><c>--heartbeat-interval</c>; null: the server's default (2 s, so 3 missed ones are 6 s).</summary>
    public TimeSpan? HeartbeatInterval { get; init; }

    /// <summary>
    /// Every agent (and so its replicas) in a network namespace of its own, whose only link is a veth
    /// to the host; the server and edge listen on the first namespace's host address, which every
    /// namespace has a route to. Then <see cref="ChaosStack.Cut"/> can cut a node off.
    /// </summary>
    public bool NetworkNamespaces { get; init; }

    /// <summary>
    /// The edge as its own process (<c>shoal edge</c>) and the server with <c>--no-edge</c>, so the edge
    /// keeps serving while the server is down.
    /// </summary>
    public bool StandaloneEdge { get; init; }

    /// <summary>A PostgreSQL connection string (<c>--database</c>); null: SQLite in the server's data dir.</summary>
    public string? Database { get; init; }

    /// <summary>Extra arguments for every <c>shoal agent</c>.</summary>
    public IReadOnlyList<string> AgentArgs { get; init; } = [];

    /// <summary>Replicas of <c>demo</c> (one per node at most: each node has one GPU).</summary>
    public int Replicas { get; init; } = 2;

    /// <summary>The simulator's time per output token in <c>demo</c> (<c>SIM_DECODE_MS</c>); longer makes long streams.</summary>
    public int DecodeMs { get; init; } = 2;

    /// <summary>The health check of <c>demo</c>; null: the default.</summary>
    public HealthCheckSpec? Health { get; init; }

    /// <summary>The edge's first-byte cap for <c>demo</c> (<c>firstByteTimeoutSeconds</c>); null: the edge's default (none).</summary>
    public int? FirstByteTimeoutSeconds { get; init; }
}

/// <summary>
/// A server (with its in-process edge, or a standalone one) and three single-GPU agents as real
/// processes, in tunnel mode, with a 2-replica simulator cluster <c>demo</c> spread over two of
/// them; the third node is where a replacement goes.
/// </summary>
internal sealed class ChaosStack : IAsyncDisposable
{
    public const string Cluster = "demo";

    /// <summary>Short grace so a scenario sees the replacement within seconds.</summary>
    public static readonly TimeSpan GracePeriod = TimeSpan.FromSeconds(3);

    private static readonly string[] s_nodeNames = ["node-1", "node-2", "node-3"];
    private readonly TempDirectory _dir = new("shoal-chaos");
    private readonly List<ShoalProcess> _processes = [];
    private readonly ITestOutputHelper _output;
    private readonly ChaosStackOptions _options;
    private readonly List<NetworkNamespace> _namespaces = [];
    private readonly string _host;
    private readonly int _apiPort;
    private readonly int _edgePort;
    private readonly string _edgeKey = Convert.ToHexString(Guid.NewGuid().ToByteArray()).ToLowerInvariant();
    private string _token = "";

    private ChaosStack(ITestOutputHelper output, ChaosStackOptions options)
    {
        _output = output;
        _options = options;
        if (options.NetworkNamespaces)
        {
            foreach (var name in s_nodeNames)
            {
                var ns = NetworkNamespace.Create();
                _namespaces.Add(ns);
                Namespaces[name] = ns;
            }
            _host = _namespaces[0].HostAddress;
            foreach (var ns in _namespaces.Skip(1)) ns.RouteTo(_host);
        }
        else
        {
            _host = "127.0.0.1";
        }
        _apiPort = FreePort.Next();
        _edgePort = FreePort.Next();
        Api = new HttpClient { BaseAddress = new Uri($"http://{_host}:{_apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
        EdgeAddress = new Uri($"http://{_host}:{_edgePort}");
    }

    public HttpClient Api { get; }

    /// <summary>The server's bootstrap operator key (<see cref="Api"/> sends it).</summary>
    public string OperatorKey { get; private set; } = "";

    /// <summary>The key the edge's /metrics wants (the server's metrics.key; the standalone edge is given the same file).</summary>
    public string MetricsKey => File.ReadAllText(_dir.Combine("server", "metrics.key")).Trim();

    /// <summary>An endpoint key of the cluster's project, which the load sends.</summary>
    public string EndpointKey { get; private set; } = "";

    public Uri EdgeAddress { get; }

    /// <summary>The grace period the server runs with.</summary>
    public TimeSpan Grace => _options.GracePeriod;

    /// <summary>Agent processes by node name (the current one, after a restart).</summary>
    public Dictionary<string, ShoalProcess> Agents { get; } = new(StringComparer.Ordinal);

    /// <summary>Each agent's network namespace by node name (with <see cref="ChaosStackOptions.NetworkNamespaces"/>).</summary>
    public Dictionary<string, NetworkNamespace> Namespaces { get; } = new(StringComparer.Ordinal);

    /// <summary>The server process (the current one, after a restart).</summary>
    public ShoalProcess Server { get; private set; } = null!;

    /// <summary>The standalone edge process (with <see cref="ChaosStackOptions.StandaloneEdge"/>).</summary>
    public ShoalProcess? Edge { get; private set; }

    public static Task<ChaosStack> StartAsync(ITestOutputHelper output) => StartAsync(output, new ChaosStackOptions());

    public static async Task<ChaosStack> StartAsync(ITestOutputHelper output, ChaosStackOptions options)
    {
        var stack = new ChaosStack(output, options);
        try
        {
            await stack.StartCoreAsync();
            return stack;
        }
        catch
        {
            stack.DumpOutput();
            await stack.DisposeAsync();
            throw;
        }
    }

    private async Task StartCoreAsync()
    {
        await StartServerAsync();
        if (_options.StandaloneEdge)
        {
            Edge = Track(ShoalProcess.Start("edge",
            [
                "edge", "--server", Api.BaseAddress!.ToString().TrimEnd('/'), "--key", _edgeKey,
                "--listen", $"{_host}:{_edgePort}", "--log-level", "Warning", "--metrics-key-file", _dir.Combine("server", "metrics.key"),
                "--spool-dir", _dir.Combine("edge-spool"),
            ]));
            await Eventually.GetAsync(async () =>
            {
                try
                {
                    using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
                    return (await http.GetAsync(new Uri(EdgeAddress, "/healthz"))).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, ok => ok, TimeSpan.FromSeconds(30), "edge up");
        }

        EndpointKey = await ApiKeys.CreateAsync(Api);
        var tokenResponse = await Api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 3 }, ShoalJsonContext.Default.CreateTokenRequest);
        tokenResponse.EnsureSuccessStatusCode();
        _token = (await tokenResponse.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
        foreach (var name in s_nodeNames) StartAgent(name);
        await Eventually.GetAsync(NodesAsync, n => n.Count(x => x.State == NodeState.Ready) == 3, TimeSpan.FromSeconds(60), "three ready nodes");

        var created = await Api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
        {
            Name = Cluster,
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Replicas = _options.Replicas,
            Health = _options.Health,
            FirstByteTimeoutSeconds = _options.FirstByteTimeoutSeconds,
            Env = new() { ["SIM_DECODE_MS"] = _options.DecodeMs.ToString(System.Globalization.CultureInfo.InvariantCulture), ["SIM_STARTUP_DELAY_MS"] = "0" },
        }, ShoalJsonContext.Default.CreateClusterRequest);
        if (created.StatusCode != HttpStatusCode.Created) throw new InvalidOperationException($"create cluster: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync()}");
        await Eventually.GetAsync(StatusAsync, s => s.Cluster.ReadyReplicas == _options.Replicas, TimeSpan.FromSeconds(60), $"{_options.Replicas} ready replicas");
        if (_options.StandaloneEdge)
        {
            // The standalone edge gets the table over its control stream: wait until it routes.
            await Eventually.GetAsync(async () =>
            {
                try
                {
                    using var http = new HttpClient { BaseAddress = EdgeAddress, Timeout = TimeSpan.FromSeconds(5) }.WithKey(EndpointKey);
                    using var content = new StringContent("{\"model\":\"shoal-sim\",\"messages\":[{\"role\":\"user\",\"content\":\"up\"}],\"max_tokens\":1}", System.Text.Encoding.UTF8, "application/json");
                    return (await http.PostAsync($"/c/{Cluster}/v1/chat/completions", content)).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, ok => ok, TimeSpan.FromSeconds(30), "the standalone edge routing");
        }
    }

    /// <summary>Starts the server (again: same data dir or database, same ports) and waits until it answers.</summary>
    public async Task StartServerAsync()
    {
        var args = new List<string>
        {
            "server", "--listen", $"{_host}:{_apiPort}",
            "--data-dir", _dir.Combine("server"), "--grace-period", $"{_options.GracePeriod.TotalMilliseconds}ms",
            "--restart-grace-period", $"{_options.RestartGracePeriod.TotalSeconds}s", "--log-level", "Warning",
            "--allow-simulated-gpus", "--allow-loopback-nodes",
        };
        args.AddRange(_options.StandaloneEdge ? ["--no-edge", "--edge-key", _edgeKey] : ["--edge-listen", $"{_host}:{_edgePort}"]);
        if (_options.HeartbeatInterval is { } hb) args.AddRange(["--heartbeat-interval", $"{hb.TotalMilliseconds}ms"]);
        if (_options.Database is { } db) args.AddRange(["--database", db]);
        Server = Track(ShoalProcess.Start("server", args));
        await Eventually.GetAsync(async () =>
        {
            try
            {
                return (await Api.GetAsync("/healthz")).IsSuccessStatusCode;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, ok => ok, TimeSpan.FromSeconds(30), "server up");
        OperatorKey = await ApiKeys.ReadOperatorKeyAsync(_dir.Combine("server"));
        Api.WithKey(OperatorKey);
    }

    /// <summary>Starts (or restarts, from its saved identity) the agent of a node.</summary>
    public ShoalProcess StartAgent(string name)
    {
        var ns = Namespaces.GetValueOrDefault(name);
        var agent = ShoalProcess.Start(name,
        [
            "agent", "--server", Api.BaseAddress!.ToString().TrimEnd('/'), "--token", _token, "--name", name, "--simulate-gpus", "rtx-4090:1",
            "--data-dir", _dir.Combine(name), "--runtime", "process", "--enable-process-runtime", "--log-level", "Warning",
            // In namespaces the edge is across a (test-made) network, over plain http.
            .. _options.NetworkNamespaces ? ["--allow-plain-tunnels"] : Array.Empty<string>(),
            .. _options.AgentArgs,
        ], netns: ns?.Name);
        Track(agent);
        Agents[name] = agent;
        return agent;
    }

    /// <summary>Cuts a node's link (see <see cref="NetworkNamespace.Cut"/>).</summary>
    public void Cut(string node) => Namespaces[node].Cut();

    /// <summary>Gives a cut node its link back.</summary>
    public void Restore(string node) => Namespaces[node].Restore();

    /// <summary>Replica processes of this stack by replica id: found by <c>SHOAL_REPLICA_ID</c>, working directory in this stack's dir.</summary>
    public Dictionary<string, List<int>> ReplicaProcesses() =>
        Shoal.Testing.ReplicaProcesses.Find()
            .Select(p => (p.Key, Pids: p.Value.Where(IsOurs).ToList()))
            .Where(p => p.Pids.Count > 0)
            .ToDictionary(p => p.Key, p => p.Pids, StringComparer.Ordinal);

    private bool IsOurs(int pid)
    {
        try
        {
            var cwd = new DirectoryInfo($"/proc/{pid}/cwd").ResolveLinkTarget(returnFinalTarget: false)?.FullName;
            return cwd is not null && cwd.StartsWith(_dir.Path + Path.DirectorySeparatorChar, StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private ShoalProcess Track(ShoalProcess process)
    {
        lock (_processes) _processes.Add(process);
        return process;
    }

    public async Task<NodeDto[]> NodesAsync()
    {
        try
        {
            return (await Api.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!;
        }
        catch (HttpRequestException)
        {
            return [];
        }
    }

    public async Task<ClusterStatusDto> StatusAsync() =>
        (await Api.GetFromJsonAsync($"/v1/clusters/{Cluster}/status", ShoalJsonContext.Default.ClusterStatusDto))!;

    public async Task<ClusterEventDto[]> EventsAsync() =>
        (await Api.GetFromJsonAsync($"/v1/clusters/{Cluster}/events?limit=1000", ShoalJsonContext.Default.ClusterEventDtoArray))!;

    public void DumpOutput()
    {
        foreach (var p in _processes) _output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
    }

    public async ValueTask DisposeAsync()
    {
        // Agents first (they stop their replicas), then the server.
        foreach (var p in _processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
        foreach (var p in _processes) await p.DisposeAsync();
        // Replicas an agent left behind (killed with -9, or told to leave them running) go too.
        foreach (var pid in ReplicaProcesses().Values.SelectMany(p => p))
        {
            try
            {
                using var process = System.Diagnostics.Process.GetProcessById(pid);
                process.Kill();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
            }
        }
        foreach (var ns in _namespaces) ns.Dispose();
        Api.Dispose();
        _dir.Dispose();
    }
}
