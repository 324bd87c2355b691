using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane.Edges;
using Shoal.Edge;
using Shoal.Edge.Gateway;
using Shoal.Server;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// The usage ledger between a standalone edge and the server (issue 16): rows spooled at the edge,
/// shipped on its control link, stored once per request id; kept while the server is away and shipped
/// when it is back; the usage API's visibility; GPU-seconds from a replica's running time.
/// </summary>
public sealed class UsageLedgerTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-ledger");
    private readonly int _apiPort = FreePort.Next();
    private LoopbackReplica _replica = null!;

    public async Task InitializeAsync() => _replica = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync("ok"));

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        _dir.Dispose();
    }

    private Task<ShoalServer> StartServerAsync() => ShoalServer.StartAsync(
        new ServerOptions { Listen = $"127.0.0.1:{_apiPort}", NoEdge = true, DataDir = _dir.Combine("server"), LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    private Task<EdgeServer> StartEdgeAsync(ShoalServer server) => EdgeServer.StartAsync(
        new EdgeServerOptions
        {
            Server = server.ApiAddress.ToString(),
            Key = File.ReadAllText(server.EdgeKeyFile!),
            Edge = new EdgeOptions { Listen = "127.0.0.1:0", Name = "edge-a", SpoolDirectory = _dir.Combine("spool") },
            LogLevel = LogLevel.Warning,
        },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    private static async Task<UsageRecord[]> RowsAsync(HttpClient api) =>
        (await api.GetFromJsonAsync("/v1/usage/records?since=1h&limit=10000", ShoalJsonContext.Default.UsageRecordArray))!;

    private static async Task<List<string>> SendAsync(HttpClient client, int count)
    {
        var ids = new List<string>();
        for (var i = 0; i < count; i++)
        {
            using var response = await client.GetAsync($"/c/demo/v1/models?i={i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            ids.Add(response.Headers.GetValues(GatewayHeaders.RequestId).Single());
        }
        return ids;
    }

    [Fact]
    public async Task Rows_are_stored_once_kept_while_the_server_is_away_and_GPU_seconds_follow_the_replica()
    {
        var server = await StartServerAsync();
        EdgeServer? edge = null;
        try
        {
            edge = await StartEdgeAsync(server);
            await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));
            var token = await CreateTokenAsync(server);
            var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
            var (agent, _) = await WireAgent.RegisterAsync(agentUri, token, "node-d");
            await using (agent)
            {
                await agent!.SendAsync(WireAgent.Hello("node-d", ("rtx-4090", 1)));
                await agent.ReceiveAsync<WelcomeMessage>();
                await agent.ReceiveAsync<AssignmentsMessage>();
                using var api = server.ApiClient();
                (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090" },
                    ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
                var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
                var replicaId = Assert.Single(assigned.Replicas).ReplicaId;
                // The replica started 100 s ago (its agent's word), and is ready now.
                var started = DateTimeOffset.UtcNow.AddSeconds(-100);
                await agent.SendAsync(new HeartbeatMessage
                {
                    AppliedRevision = assigned.Revision,
                    Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replica.Port, StartedAt = started, ReadyAt = started }],
                });

                using var client = new HttpClient { BaseAddress = edge.Address };
                await Eventually.GetAsync(() => client.GetAsync("/c/demo/v1/models"), r => r.IsSuccessStatusCode, what: "routed through the standalone edge");
                var ids = await SendAsync(client, 20);
                var rows = await Eventually.GetAsync(() => RowsAsync(api), r => ids.All(id => r.Any(x => x.RequestId == id)), what: "20 rows stored");
                var row = rows.Single(r => r.RequestId == ids[0]);
                Assert.Equal(("default", "demo", replicaId, "edge-a", 200, 1, false), (row.Project, row.Cluster, row.ReplicaId, row.Edge, row.Status, row.Attempts, row.Cut));
                Assert.NotNull(row.NodeId);

                // The server goes away: rows wait in the spool, and ship when it is back, each once.
                await server.DisposeAsync();
                await Eventually.UntilAsync(() => !edge.Control.Connected, what: "edge noticed the server is gone");
                ids.AddRange(await SendAsync(client, 10));
                var spool = edge.Services.GetRequiredService<UsageSpool>();
                await Eventually.UntilAsync(() => spool.Written >= 31, what: "rows written to the spool");
                server = await StartServerAsync();
                using var api2 = server.ApiClient();
                rows = await Eventually.GetAsync(() => RowsAsync(api2), r => ids.All(id => r.Any(x => x.RequestId == id)), TimeSpan.FromSeconds(20), what: "rows shipped after the server came back");
                Assert.Equal(rows.Length, rows.Select(r => r.RequestId).Distinct(StringComparer.Ordinal).Count());
                Assert.Equal(spool.Written, rows.Length);

                // Shipping a batch again stores nothing new.
                var intake = server.Services.GetRequiredService<UsageIntake>();
                var again = await intake.StoreAsync("test", 1, rows[..5], CancellationToken.None);
                Assert.True(again.Stored);
                Assert.Equal(rows.Length, (await RowsAsync(api2)).Length);
                // A bad batch is refused (too many records) or its bad rows skipped, and the server stays up.
                Assert.False((await intake.StoreAsync("test", 2, [.. Enumerable.Repeat(rows[0], UsageIntake.MaxRecords + 1)], CancellationToken.None)).Stored);
                var skipped = await intake.StoreAsync("test", 3, [rows[0] with { RequestId = "bad", DurationMs = double.NaN }, rows[0] with { RequestId = "" }], CancellationToken.None);
                Assert.Equal((true, 2), (skipped.Stored, skipped.Skipped));

                var report = (await api2.GetFromJsonAsync("/v1/usage?by=cluster&since=1h", ShoalJsonContext.Default.UsageReportDto))!;
                var demo = Assert.Single(report.Rows);
                Assert.Equal(("demo", (long)rows.Length), (demo.Group, demo.Requests));
                // 100 s of one GPU so far (and a little more while the test runs).
                Assert.InRange(demo.GpuSeconds, 100, 160);
                var byNode = (await api2.GetFromJsonAsync("/v1/usage?by=node&since=1h", ShoalJsonContext.Default.UsageReportDto))!;
                // The same run, read a moment later while it still runs: as much, or a little more (not a rounding of it).
                Assert.InRange(Assert.Single(byNode.Rows).GpuSeconds, demo.GpuSeconds - 0.01, demo.GpuSeconds + 5);
            }
        }
        finally
        {
            if (edge is not null) await edge.DisposeAsync();
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_stopped_replica_ends_its_run_so_its_GPU_seconds_stay_the_same()
    {
        await using var server = await StartServerAsync();
        var token = await CreateTokenAsync(server);
        var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
        var (agent, _) = await WireAgent.RegisterAsync(agentUri, token, "node-g");
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("node-g", ("rtx-4090", 1)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            using var api = server.ApiClient();
            (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "gpu", Image = "shoal/sim", Gpu = "rtx-4090" },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            var replicaId = Assert.Single(assigned.Replicas).ReplicaId;
            var started = DateTimeOffset.UtcNow.AddSeconds(-60);
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replica.Port, StartedAt = started, ReadyAt = started }],
            });
            async Task<double> GpuSecondsAsync() =>
                (await api.GetFromJsonAsync("/v1/usage?by=cluster&since=1h", ShoalJsonContext.Default.UsageReportDto))!.Rows.SingleOrDefault(r => r.Group == "gpu")?.GpuSeconds ?? 0;
            await Eventually.GetAsync(GpuSecondsAsync, s => s >= 60, what: "the running replica's GPU-seconds");

            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Stopped, HostPort = _replica.Port, StartedAt = started, ExitCode = 0 }],
            });
            var runs = await Eventually.GetAsync(() => server.Services.GetRequiredService<Store.IShoalStore>().ListReplicaRunsAsync(started.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1)),
                r => r.Count == 1 && r[0].EndedAt is not null, what: "the run ended");
            var run = runs[0];
            Assert.Equal((replicaId, started.ToUnixTimeMilliseconds(), "gpu", "default", 1), (run.ReplicaId, run.StartedAt.ToUnixTimeMilliseconds(), run.Cluster, run.Project, run.Gpus));
            var first = await GpuSecondsAsync();
            Assert.InRange(first, 60, 120);
            // An ended run no longer grows (a running one would have, by the milliseconds between the two queries).
            Assert.Equal(first, await GpuSecondsAsync());
        }
    }

    [Fact]
    public async Task Usage_is_refused_to_endpoint_keys_and_the_node_view_to_project_keys()
    {
        await using var server = await StartServerAsync();
        using var api = server.ApiClient();
        var viewer = await ApiKeys.CreateAsync(api, ApiKeyRoles.Viewer);
        var endpoint = await ApiKeys.CreateAsync(api);
        using var asViewer = new HttpClient { BaseAddress = server.ApiAddress }.WithKey(viewer);
        using var asEndpoint = new HttpClient { BaseAddress = server.ApiAddress }.WithKey(endpoint);

        Assert.Equal(HttpStatusCode.OK, (await asViewer.GetAsync("/v1/usage?by=project&since=24h")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await asViewer.GetAsync("/v1/usage?by=node")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await asEndpoint.GetAsync("/v1/usage?by=project")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await api.GetAsync("/v1/usage?by=node")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await api.GetAsync("/v1/usage?by=gpu")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await api.GetAsync("/v1/usage?since=yesterday")).StatusCode);
    }

    private static async Task<string> CreateTokenAsync(ShoalServer server)
    {
        using var api = server.ApiClient();
        var response = await api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1, TtlSeconds = 600 }, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    }
}
