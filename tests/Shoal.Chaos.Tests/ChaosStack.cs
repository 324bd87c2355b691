using System.Net;
using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// A server (with its in-process edge) and three single-GPU agents as real processes, in tunnel
/// mode, with a 2-replica simulator cluster <c>demo</c> spread over two of them; the third node is
/// where a replacement goes.
/// </summary>
internal sealed class ChaosStack : IAsyncDisposable
{
    public const string Cluster = "demo";

    /// <summary>Short grace so a scenario sees the replacement within seconds.</summary>
    public static readonly TimeSpan GracePeriod = TimeSpan.FromSeconds(3);

    private readonly TempDirectory _dir = new("shoal-chaos");
    private readonly List<ShoalProcess> _processes = [];
    private readonly ITestOutputHelper _output;

    private ChaosStack(ITestOutputHelper output)
    {
        _output = output;
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        Api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
        EdgeAddress = new Uri($"http://127.0.0.1:{edgePort}");
    }

    public HttpClient Api { get; }

    public Uri EdgeAddress { get; }

    /// <summary>Agent processes by node name.</summary>
    public Dictionary<string, ShoalProcess> Agents { get; } = new(StringComparer.Ordinal);

    public static async Task<ChaosStack> StartAsync(ITestOutputHelper output)
    {
        var stack = new ChaosStack(output);
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
        var api = Api.BaseAddress!.ToString().TrimEnd('/');
        _processes.Add(ShoalProcess.Start("server",
        [
            "server", "--listen", $"127.0.0.1:{Api.BaseAddress!.Port}", "--edge-listen", $"127.0.0.1:{EdgeAddress.Port}",
            "--data-dir", _dir.Combine("server"), "--grace-period", $"{GracePeriod.TotalSeconds}s", "--log-level", "Warning",
        ]));
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

        var tokenResponse = await Api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 3 }, ShoalJsonContext.Default.CreateTokenRequest);
        tokenResponse.EnsureSuccessStatusCode();
        var token = (await tokenResponse.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
        foreach (var name in (string[])["node-1", "node-2", "node-3"])
        {
            var agent = ShoalProcess.Start(name,
            [
                "agent", "--server", api, "--token", token, "--name", name, "--simulate-gpus", "rtx-4090:1",
                "--data-dir", _dir.Combine(name), "--runtime", "process", "--enable-process-runtime", "--log-level", "Warning",
            ]);
            _processes.Add(agent);
            Agents[name] = agent;
        }
        await Eventually.GetAsync(NodesAsync, n => n.Count(x => x.State == NodeState.Ready) == 3, TimeSpan.FromSeconds(60), "three ready nodes");

        var created = await Api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
        {
            Name = Cluster,
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Replicas = 2,
            Env = new() { ["SIM_DECODE_MS"] = "2", ["SIM_STARTUP_DELAY_MS"] = "0" },
        }, ShoalJsonContext.Default.CreateClusterRequest);
        if (created.StatusCode != HttpStatusCode.Created) throw new InvalidOperationException($"create cluster: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync()}");
        await Eventually.GetAsync(StatusAsync, s => s.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(60), "2 ready replicas");
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
        Api.Dispose();
        _dir.Dispose();
    }
}
