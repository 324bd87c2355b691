using System.Net;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// The foundation, end to end with real processes: a server and the three dev nodes as separate
/// OS processes, the simulator as their replicas, requests through the edge; then a server
/// restart (SQLite, then PostgreSQL) and a delete.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class DeployEndToEndTests(ITestOutputHelper output)
{
    private static readonly (string Name, string Gpus)[] s_nodes = [("node-1", "rtx-4090:2"), ("node-2", "rtx-4090:1"), ("node-3", "rtx-3090:1")];

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Deploy_route_scale_restart_and_delete(string store)
    {
        await using var pg = store == "postgres" ? await PostgresServer.StartAsync() : null;
        var database = pg is null ? null : await pg.CreateDatabaseAsync("e2e");
        using var dir = new TempDirectory("shoal-e2e");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var api = $"http://127.0.0.1:{apiPort}";
        var processes = new List<ShoalProcess>();

        ShoalProcess StartServer()
        {
            List<string> args = ["server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"), "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes"];
            if (database is not null) args.AddRange(["--database", database]);
            var p = ShoalProcess.Start("server", args);
            processes.Add(p);
            return p;
        }

        using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(30) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(30) };
        var server = StartServer();
        try
        {
            await WaitForServerAsync(http, dir.Combine("server"), edge);
            var token = await CreateTokenAsync(http, s_nodes.Length);
            foreach (var (name, gpus) in s_nodes)
            {
                processes.Add(ShoalProcess.Start(name,
                [
                    "agent", "--server", api, "--token", token, "--name", name, "--simulate-gpus", gpus,
                    "--data-dir", dir.Combine(name), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
                ]));
            }
            await Eventually.GetAsync(() => NodesAsync(http), n => n.Count(x => x.State == NodeState.Ready) == 3, TimeSpan.FromSeconds(30), "three ready nodes");

            // 1. Deploy 2 replicas: one on node-1 and one on node-2.
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 2,
                Env = new() { ["SIM_DECODE_MS"] = "1" },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var status = await WaitForReadyAsync(http, 2);
            Assert.Equal(["node-1", "node-2"], status.Replicas.Select(r => r.NodeName!).Order().ToArray());

            // 100 chat completions through the edge all succeed, and both replicas serve some.
            var served = await SendChatsAsync(edge, 100);
            Assert.Equal(2, served.Count);
            Assert.All(served.Values, count => Assert.True(count > 0));
            Assert.Equal(100, served.Values.Sum());

            // 2. Scale to 3: the third goes on node-1's second GPU.
            await ScaleAsync(http, 3);
            status = await WaitForReadyAsync(http, 3);
            var onNode1 = status.Replicas.Where(r => r.NodeName == "node-1").ToList();
            Assert.Equal(2, onNode1.Count);
            Assert.Equal([0, 1], onNode1.SelectMany(r => r.Gpus).Order().ToArray());

            // 3. Scale to 4: the fourth is pending, with its reason; nothing ever on the rtx-3090 node.
            await ScaleAsync(http, 4);
            status = await Eventually.GetAsync(() => StatusAsync(http), s => s.Replicas.Length == 4 && s.Replicas.Any(r => r.Reason is not null), what: "a pending fourth replica");
            var pending = Assert.Single(status.Replicas, r => r.State == ReplicaState.Pending);
            Assert.Equal("no node with a free rtx-4090", pending.Reason);
            Assert.DoesNotContain(status.Replicas, r => r.NodeName == "node-3");

            // 4. Restart the server while replicas run: same replicas, same processes, none twice.
            var before = status.Replicas.Where(r => r.Node is not null).ToDictionary(r => r.Id, r => (r.Node, string.Join(',', r.Gpus)));
            var pidsBefore = OurProcesses(before.Keys);
            Assert.Equal(3, pidsBefore.Count);
            Assert.All(pidsBefore.Values, pids => Assert.Single(pids));

            await server.StopAsync();
            server = StartServer();
            await WaitForServerAsync(http, dir.Combine("server"), edge);
            await Eventually.GetAsync(() => NodesAsync(http), n => n.Count(x => x.State == NodeState.Ready) == 3, TimeSpan.FromSeconds(30), "agents reconnected");
            status = await WaitForReadyAsync(http, 3);
            var after = status.Replicas.Where(r => r.Node is not null).ToDictionary(r => r.Id, r => (r.Node, string.Join(',', r.Gpus)));
            Assert.Equal(before.OrderBy(kv => kv.Key), after.OrderBy(kv => kv.Key));
            Assert.Equal(4, status.Replicas.Length);
            var pidsAfter = OurProcesses(before.Keys);
            Assert.Equal(pidsBefore.OrderBy(kv => kv.Key).Select(kv => (kv.Key, kv.Value.Single())), pidsAfter.OrderBy(kv => kv.Key).Select(kv => (kv.Key, kv.Value.Single())));
            served = await SendChatsAsync(edge, 30);
            Assert.Equal(30, served.Values.Sum());

            // 5. Delete: every replica process is gone.
            Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync("/v1/clusters/demo")).StatusCode);
            await Eventually.GetAsync(() => Task.FromResult(OurProcesses(before.Keys)), p => p.Count == 0, TimeSpan.FromSeconds(30), "replica processes gone");
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    internal static Dictionary<string, List<int>> OurProcesses(IEnumerable<string> ids)
    {
        var all = ReplicaProcesses.Find();
        return ids.Where(all.ContainsKey).ToDictionary(id => id, id => all[id]);
    }

    /// <summary>
    /// Waits until the server answers, then makes <paramref name="http"/> send its operator key and
    /// <paramref name="edge"/> (when given) an endpoint key of the default project.
    /// </summary>
    internal static async Task WaitForServerAsync(HttpClient http, string serverDataDir, HttpClient? edge = null)
    {
        await WaitForHealthAsync(http);
        http.WithKey(await ApiKeys.ReadOperatorKeyAsync(serverDataDir));
        if (edge is not null) edge.WithKey(await ApiKeys.CreateAsync(http));
    }

    private static async Task WaitForHealthAsync(HttpClient http) =>
        await Eventually.GetAsync(async () =>
        {
            try
            {
                return (await http.GetAsync("/healthz")).IsSuccessStatusCode;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, ok => ok, TimeSpan.FromSeconds(30), "server up");

    internal static async Task<string> CreateTokenAsync(HttpClient http, int uses)
    {
        var response = await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = uses }, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    }

    internal static async Task<NodeDto[]> NodesAsync(HttpClient http)
    {
        try
        {
            return (await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!;
        }
        catch (HttpRequestException)
        {
            return [];
        }
    }

    internal static async Task<ClusterStatusDto> StatusAsync(HttpClient http) =>
        (await http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto))!;

    internal static Task<ClusterStatusDto> WaitForReadyAsync(HttpClient http, int ready) =>
        Eventually.GetAsync(() => StatusAsync(http), s => s.Cluster.ReadyReplicas == ready, TimeSpan.FromSeconds(30), $"{ready} ready replicas");

    private static async Task ScaleAsync(HttpClient http, int replicas)
    {
        var response = await http.PatchAsJsonAsync("/v1/clusters/demo", new UpdateClusterRequest { Replicas = replicas }, ShoalJsonContext.Default.UpdateClusterRequest);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    internal static async Task<Dictionary<string, int>> SendChatsAsync(HttpClient edge, int count)
    {
        var served = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            using var content = new StringContent($"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {i}\"}}],\"max_tokens\":4}}", Encoding.UTF8, "application/json");
            var response = await edge.PostAsync("/c/demo/v1/chat/completions", content);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, $"request {i}: {(int)response.StatusCode} {body}");
            Assert.Contains("\"usage\"", body, StringComparison.Ordinal);
            var replica = response.Headers.GetValues("x-shoal-replica").Single();
            served[replica] = served.GetValueOrDefault(replica) + 1;
        }
        return served;
    }
}
