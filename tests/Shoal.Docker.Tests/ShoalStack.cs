using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Docker.Tests;

/// <summary>
/// A real <c>shoal server</c> (with its edge) and one <c>shoal agent</c> on the docker runtime
/// with host networking, as separate processes on loopback.
/// </summary>
public sealed class ShoalStack : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("shoal-docker");
    private readonly string _gpus;
    private ShoalProcess? _server;
    private ShoalProcess? _agent;
    private string? _token;

    private ShoalStack(string gpus)
    {
        _gpus = gpus;
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

    public string NodeId { get; private set; } = "";

    public string Output => $"--- server\n{_server?.Output}\n--- agent\n{_agent?.Output}";

    public static async Task<ShoalStack> StartAsync(string gpus = "rtx-4090:2")
    {
        var stack = new ShoalStack(gpus);
        try
        {
            stack._server = ShoalProcess.Start("server",
                ["server", "--listen", stack.Api["http://".Length..], "--edge-listen", stack.EdgeAddress, "--data-dir", stack._dir.Combine("server"), "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes"]);
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
            stack.Http.WithKey(await ApiKeys.ReadOperatorKeyAsync(stack._dir.Combine("server")));
            stack.Edge.WithKey(await ApiKeys.CreateAsync(stack.Http));
            var created = await stack.Http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1, Labels = ["trusted"] }, ShoalJsonContext.Default.CreateTokenRequest);
            created.EnsureSuccessStatusCode();
            stack._token = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            await stack.StartAgentAsync();
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the agent (registering the first time) and waits until its node is ready.</summary>
    public async Task StartAgentAsync()
    {
        List<string> args =
        [
            "agent", "--server", Api, "--name", "docker-node", "--simulate-gpus", _gpus, "--data-dir", _dir.Combine("agent"),
            "--runtime", "docker", "--docker-network", "host", "--allow-host-network", "--log-level", "Information",
        ];
        if (NodeId.Length == 0)
        {
            args.AddRange(["--token", _token!]);
        }
        _agent = ShoalProcess.Start("agent", args);
        var nodes = await Eventually.GetAsync(NodesAsync, n => n.Any(x => x.State == NodeState.Ready), TimeSpan.FromSeconds(30), "the node to be ready");
        NodeId = nodes.Single().Id;
    }

    /// <summary>SIGTERM to the agent; waits for it to exit.</summary>
    public async Task StopAgentAsync()
    {
        if (_agent is not null)
        {
            await _agent.StopAsync();
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
        if (_agent is not null)
        {
            await _agent.DisposeAsync();
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
