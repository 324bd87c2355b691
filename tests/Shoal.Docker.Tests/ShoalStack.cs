using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Docker.Tests;

/// <summary>
/// A real <c>shoal server</c> (with its edge) and one or more <c>shoal agent</c>s on the docker
/// runtime with host networking, as separate processes on loopback.
/// </summary>
public sealed class ShoalStack : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("shoal-docker");
    private readonly string _gpus;
    private readonly ShoalProcess?[] _agents;
    private readonly string[] _nodeIds;
    private ShoalProcess? _server;
    private string? _token;

    private ShoalStack(string gpus, int agents)
    {
        _gpus = gpus;
        _agents = new ShoalProcess?[agents];
        _nodeIds = Enumerable.Repeat("", agents).ToArray();
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        Api = $"http://127.0.0.1:{apiPort}";
        EdgeAddress = $"127.0.0.1:{edgePort}";
        Http = new HttpClient { BaseAddress = new Uri(Api), Timeout = TimeSpan.FromSeconds(30) };
        Edge = new HttpClient { BaseAddress = new Uri($"http://{EdgeAddress}"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public string Api { get; }

    public string EdgeAddress { get; }

    public HttpClient Http { get; }

    public HttpClient Edge { get; }

    /// <summary>The first agent's node.</summary>
    public string NodeId => _nodeIds[0];

    /// <summary>Every agent's node, in the order they were started.</summary>
    public IReadOnlyList<string> NodeIds => _nodeIds;

    /// <summary>The API key the stack's <see cref="Http"/> client sends (the operator's).</summary>
    public string OperatorKey { get; private set; } = "";

    public string Output => $"--- server\n{_server?.Output}" + string.Concat(_agents.Select((a, i) => $"\n--- agent {i}\n{a?.Output}"));

    /// <param name="gpus">What each agent simulates, e.g. <c>rtx-4090:2</c>.</param>
    /// <param name="agents">How many agents (nodes) to start.</param>
    /// <param name="serverArgs">More <c>shoal server</c> flags.</param>
    public static async Task<ShoalStack> StartAsync(string gpus = "rtx-4090:2", int agents = 1, IEnumerable<string>? serverArgs = null)
    {
        var stack = new ShoalStack(gpus, agents);
        try
        {
            stack._server = ShoalProcess.Start("server",
                ["server", "--listen", stack.Api["http://".Length..], "--edge-listen", stack.EdgeAddress, "--data-dir", stack._dir.Combine("server"), "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes", .. serverArgs ?? []]);
            await Eventually.GetAsync(async () =>
            {
                try
                {
                    return (await stack.Http.GetAsync("/healthz")).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, ok => ok, TimeSpan.FromSeconds(30), "the server to answer");
            stack.OperatorKey = await ApiKeys.ReadOperatorKeyAsync(stack._dir.Combine("server"));
            stack.Http.WithKey(stack.OperatorKey);
            stack.Edge.WithKey(await ApiKeys.CreateAsync(stack.Http));
            var created = await stack.Http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = agents, Labels = ["trusted"] }, ShoalJsonContext.Default.CreateTokenRequest);
            created.EnsureSuccessStatusCode();
            stack._token = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            for (var i = 0; i < agents; i++) await stack.StartAgentAsync(i);
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts an agent (registering the first time) and waits until its node is ready.</summary>
    public async Task StartAgentAsync(int index = 0)
    {
        var name = index == 0 ? "docker-node" : $"docker-node-{index + 1}";
        List<string> args =
        [
            "agent", "--server", Api, "--name", name, "--simulate-gpus", _gpus, "--data-dir", _dir.Combine(index == 0 ? "agent" : $"agent-{index + 1}"),
            "--runtime", "docker", "--docker-network", "host", "--allow-host-network", "--log-level", "Information",
        ];
        if (_nodeIds[index].Length == 0)
        {
            args.AddRange(["--token", _token!]);
        }
        _agents[index] = ShoalProcess.Start("agent", args);
        var nodes = await Eventually.GetAsync(NodesAsync, n => n.Any(x => x.Name == name && x.State == NodeState.Ready), TimeSpan.FromSeconds(30), $"node {name} to be ready");
        _nodeIds[index] = nodes.Single(x => x.Name == name).Id;
    }

    /// <summary>SIGTERM to the first agent; waits for it to exit.</summary>
    public async Task StopAgentAsync()
    {
        if (_agents[0] is { } agent)
        {
            await agent.StopAsync();
        }
    }

    public async Task<NodeDto[]> NodesAsync() =>
        (await Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!;

    public async Task DeployAsync(CreateClusterRequest request)
    {
        var response = await Http.PostAsJsonAsync("/v1/clusters", request, ShoalJsonContext.Default.CreateClusterRequest);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    public async Task<ClusterStatusDto> StatusAsync(string cluster) =>
        (await Http.GetFromJsonAsync($"/v1/clusters/{cluster}/status", ShoalJsonContext.Default.ClusterStatusDto))!;

    public Task<ClusterStatusDto> WaitAsync(string cluster, Func<ClusterStatusDto, bool> done, string what, int seconds = 60) =>
        Eventually.GetAsync(() => StatusAsync(cluster), done, TimeSpan.FromSeconds(seconds), what);

    public Task<ClusterStatusDto> WaitReadyAsync(string cluster, int replicas) =>
        WaitAsync(cluster, s => s.Replicas.Length == replicas && s.Replicas.All(r => r.State == ReplicaState.Ready && r.Healthy), $"{replicas} ready replicas of {cluster}");

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in _agents)
        {
            if (agent is not null)
            {
                await agent.DisposeAsync();
            }
        }
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        Http.Dispose();
        Edge.Dispose();
        _dir.Dispose();
    }
}
