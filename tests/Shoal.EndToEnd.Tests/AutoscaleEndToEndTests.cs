using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// Issue 15, must-show 2 and 3 (short): a real server and agent, the simulator as replicas with a
/// simulated model load; a load step on an autoscaled cluster of 2 scales it up on the replicas'
/// waiting figures (vLLM's <c>num_requests_waiting</c>, scraped by the agent), the new replicas
/// serve, and when the load stops the cluster drains back to min after its (short) window, with
/// no failed request throughout. The figures (reaction times) are printed; speed is measured in
/// the benchmark, not asserted here.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class AutoscaleEndToEndTests(ITestOutputHelper output)
{
    private const int ModelLoadMs = 1500;
    private const int Workers = 24;

    [Fact]
    public async Task A_load_step_scales_up_on_waiting_requests_and_back_down_to_min_when_it_stops_with_no_failed_request()
    {
        await RunAsync("shoal-autoscale", gpus: 5, async (http, edge) =>
        {

            // Two batch slots per replica and 50 ms a token: 24 clients keep about 10 requests waiting at each of 2 replicas.
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Env = new()
                {
                    ["SIM_BATCH_SLOTS"] = "2",
                    ["SIM_DECODE_MS"] = "50",
                    ["SIM_STARTUP_DELAY_MS"] = ModelLoadMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
                },
                Health = new HealthCheckSpec { IntervalMs = 200 },
                Autoscale = new AutoscaleRequest { Min = 2, Max = 5, TargetWaiting = 2, ScaleDownWindowSeconds = 3 },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            await DeployEndToEndTests.WaitForReadyAsync(http, 2);

            // The load step.
            var step = DateTimeOffset.UtcNow;
            using var stop = new CancellationTokenSource();
            var load = Enumerable.Range(0, Workers).Select(i => ClientAsync(edge, i, stop.Token)).ToArray();
            ClusterEventDto scaledUp;
            ClusterStatusDto status;
            try
            {
                scaledUp = await Eventually.GetAsync(() => ScaledAsync(http, "scaled up"), e => e is not null, TimeSpan.FromSeconds(20), "a scale-up event") ?? throw new InvalidOperationException();
                status = await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Cluster.ReadyReplicas >= 4, TimeSpan.FromSeconds(30), "the new replicas ready");
                // Keep the load on a moment so the new replicas serve too.
                await Task.Delay(TimeSpan.FromSeconds(1));
            }
            finally
            {
                await stop.CancelAsync();
            }
            var results = await Task.WhenAll(load);
            var sent = results.Sum(r => r.Sent);
            var failures = results.SelectMany(r => r.Failures).ToList();
            var lastReady = status.Replicas.Where(r => r.ReadyAt is not null).Max(r => r.ReadyAt!.Value);
            output.WriteLine($"scale-up decision {(scaledUp.At - step).TotalMilliseconds:0} ms after the load step: {scaledUp.Message}");
            output.WriteLine($"last new replica ready {(lastReady - scaledUp.At).TotalMilliseconds:0} ms after the decision (model load {ModelLoadMs} ms)");
            output.WriteLine($"{sent} requests during the step, {failures.Count} failed");
            Assert.Empty(failures);
            Assert.True(sent > Workers);
            Assert.Matches(@"^scaled up 2→[3-5]: \d+(\.\d)? waiting per replica, target 2", scaledUp.Message);
            Assert.True(scaledUp.At - step < TimeSpan.FromSeconds(15), $"decision {scaledUp.At - step} after the step");

            // Load gone: after the 3 s window the cluster goes back to min, draining the surplus; the replicas left still serve.
            // It steps down as the highest recommendation in the window falls, never below min.
            await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Cluster.Replicas == 2, TimeSpan.FromSeconds(30), "the count back at min");
            var downs = (await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray))!
                .Where(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled down", StringComparison.Ordinal)).ToList();
            foreach (var e in downs) output.WriteLine($"{(e.At - step).TotalMilliseconds:0} ms after the step: {e.Message}");
            Assert.NotEmpty(downs);
            Assert.All(downs, e => Assert.Contains("highest recommendation over the last 3s is", e.Message, StringComparison.Ordinal));
            Assert.Matches("^scaled down [3-5]→2: ", downs[^1].Message);
            await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Replicas.Length == 2 && s.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(30), "two replicas left");
            var after = await ClientAsync(edge, 99, CancellationToken.None, count: 10);
            Assert.Empty(after.Failures);
            var events = await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
            Assert.Contains(events!, e => e.Type == ClusterEventTypes.Draining);
            Assert.Contains(events!, e => e.Type == ClusterEventTypes.Drained);

            var final = await DeployEndToEndTests.StatusAsync(http);
            Assert.NotNull(final.Cluster.ColdStart?.Start);
            Assert.Equal(2, final.Cluster.Autoscale!.Settings.Min);
        });
    }

    /// <summary>
    /// Issue 15, must-show 1 (short): a cluster at 0 replicas gets a burst of concurrent requests. The
    /// edge holds them and wakes the control plane at once; the autoscaler steps up to exactly what the
    /// concurrency target says for the whole burst (never past it while the replicas load the model); every
    /// held request is answered once they are ready, none fails. The wait for the first answer is printed
    /// beside the cold start (the benchmark measures it; nothing is timed here).
    /// </summary>
    [Fact]
    public async Task A_cluster_at_zero_wakes_for_a_burst_scales_once_to_what_the_target_asks_and_answers_every_held_request()
    {
        const int burst = 200;
        const int modelLoadMs = 2000;
        await RunAsync("shoal-autoscale-zero", gpus: 6, async (http, edge) =>
        {

            // At zero from the start; 50 requests in flight or held per replica: a burst of 200 asks for 4.
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 0,
                Env = new() { ["SIM_STARTUP_DELAY_MS"] = modelLoadMs.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                Health = new HealthCheckSpec { IntervalMs = 200 },
                QueueTimeoutSeconds = 60,
                Autoscale = new AutoscaleRequest { Min = 0, Max = 6, TargetWaiting = 0, TargetConcurrency = 50, ScaleToZeroAfterSeconds = 600 },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var routes = await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Cluster.Replicas == 0, TimeSpan.FromSeconds(10), "the cluster at zero");
            Assert.Empty(routes.Replicas);

            var started = Stopwatch.StartNew();
            var firstAnswerMs = 0L;
            var requests = Enumerable.Range(0, burst).Select(async i =>
            {
                var result = await ClientAsync(edge, i, CancellationToken.None, count: 1);
                Interlocked.CompareExchange(ref firstAnswerMs, started.ElapsedMilliseconds, 0);
                return result;
            }).ToArray();
            var results = await Task.WhenAll(requests);
            var failures = results.SelectMany(r => r.Failures).ToList();
            foreach (var f in failures.Take(5)) output.WriteLine("failed: " + f);
            Assert.Empty(failures);
            Assert.Equal(burst, results.Sum(r => r.Sent));

            var events = (await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray))!;
            var ups = events.Where(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled up", StringComparison.Ordinal)).ToList();
            foreach (var e in ups) output.WriteLine($"{e.At:HH:mm:ss.fff} {e.Message}");
            // The wake-up goes with the first held request, so the first decision may see only part of the
            // burst (0→1) and the next the rest: steps up, never past what the whole burst asks for, never back.
            Assert.NotEmpty(ups);
            Assert.StartsWith("scaled up 0→", ups[0].Message, StringComparison.Ordinal);
            Assert.All(ups, e => Assert.Matches(@"^scaled up \d→[1-4]: ", e.Message));
            Assert.Matches(@"→4: ", ups[^1].Message);
            Assert.DoesNotContain(events, e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled down", StringComparison.Ordinal));
            var up = ups[0];
            var status = await DeployEndToEndTests.StatusAsync(http);
            Assert.Equal(4, status.Cluster.Replicas);
            var firstReady = status.Replicas.Where(r => r.ReadyAt is not null).Min(r => r.ReadyAt!.Value);
            output.WriteLine($"{burst} held requests answered, 0 failed; first answer {firstAnswerMs} ms after the burst began; " +
                $"first replica ready {(firstReady - up.At).TotalMilliseconds:0} ms after the first decision (model load {modelLoadMs} ms)");
        });
    }

    /// <summary>
    /// Issue 15, must-show 4 (end to end): replicas whose <c>/metrics</c> answers 500 (the simulator's
    /// <c>SIM_METRICS=fail</c>) give the autoscaler no waiting figures at all. The cluster still serves, and
    /// once its requests stop it goes down to min after its window: missing figures never hold a scale-down.
    /// </summary>
    [Fact]
    public async Task Replicas_whose_metrics_fail_do_not_stop_the_scale_down_to_min()
    {
        await RunAsync("shoal-autoscale-nometrics", gpus: 3, async (http, edge) =>
        {
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 3,
                Env = new() { ["SIM_METRICS"] = "fail" },
                Health = new HealthCheckSpec { IntervalMs = 200 },
                // Without load figures a drain cannot see that the replica is idle: it lasts its timeout.
                DrainTimeoutSeconds = 2,
                Autoscale = new AutoscaleRequest { Min = 1, Max = 3, TargetWaiting = 2, ScaleDownWindowSeconds = 3 },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var clock = Stopwatch.StartNew();
            await DeployEndToEndTests.WaitForReadyAsync(http, 3);
            output.WriteLine($"{clock.ElapsedMilliseconds} ms: 3 ready");
            var before = await ClientAsync(edge, 1, CancellationToken.None, count: 10);
            Assert.Empty(before.Failures);

            await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Cluster.Replicas == 1, TimeSpan.FromSeconds(30), "the count down at min");
            output.WriteLine($"{clock.ElapsedMilliseconds} ms: count at min");
            var downs = (await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray))!
                .Where(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled down", StringComparison.Ordinal)).ToList();
            foreach (var e in downs) output.WriteLine(e.Message);
            Assert.NotEmpty(downs);
            Assert.Contains(downs, e => e.Message.Contains("without figures: the edges' counts stand in", StringComparison.Ordinal));
            Assert.Matches("^scaled down [23]→1: ", downs[^1].Message);
            await Eventually.GetAsync(() => DeployEndToEndTests.StatusAsync(http), s => s.Replicas.Length == 1 && s.Cluster.ReadyReplicas == 1, TimeSpan.FromSeconds(30), "one replica left");
            output.WriteLine($"{clock.ElapsedMilliseconds} ms: one replica left");
            var after = await ClientAsync(edge, 2, CancellationToken.None, count: 10);
            Assert.Empty(after.Failures);
            var drained = (await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray))!
                .Where(e => e.Type == ClusterEventTypes.Drained).ToList();
            Assert.Equal(2, drained.Count);
            Assert.All(drained, e => Assert.Contains("the replica reports no load metrics", e.Message, StringComparison.Ordinal));
        });
    }

    /// <summary>
    /// Runs <paramref name="body"/> against a fresh server and agent (<see cref="StartAsync"/>) with clients
    /// for the API and the edge; prints every process's output when it fails, and stops them all.
    /// </summary>
    private async Task RunAsync(string name, int gpus, Func<HttpClient, HttpClient, Task> body)
    {
        using var dir = new TempDirectory(name);
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var processes = new List<ShoalProcess>();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(60) };
        try
        {
            await StartAsync(dir, apiPort, edgePort, http, edge, gpus, processes);
            await body(http, edge);
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            await StopAsync(processes);
        }
    }

    /// <summary>
    /// A server (API on <paramref name="apiPort"/>, edge on <paramref name="edgePort"/>) and one agent
    /// with <paramref name="gpus"/> simulated rtx-4090s on the process runtime, heartbeats every 500 ms.
    /// The processes go into <paramref name="processes"/> as they start (the caller prints and stops
    /// them); <paramref name="http"/> and <paramref name="edge"/> get their keys.
    /// </summary>
    private static async Task StartAsync(TempDirectory dir, int apiPort, int edgePort, HttpClient http, HttpClient edge, int gpus, List<ShoalProcess> processes)
    {
        processes.Add(ShoalProcess.Start("server",
        [
            "server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
            "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes", "--heartbeat-interval", "500ms",
        ]));
        await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"), edge);
        var token = await DeployEndToEndTests.CreateTokenAsync(http, 1);
        processes.Add(ShoalProcess.Start("node",
        [
            "agent", "--server", $"http://127.0.0.1:{apiPort}", "--token", token, "--name", "node", "--simulate-gpus", $"rtx-4090:{gpus}",
            "--data-dir", dir.Combine("node"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
        ]));
        await Eventually.GetAsync(() => DeployEndToEndTests.NodesAsync(http), n => n.Any(x => x.State == NodeState.Ready), TimeSpan.FromSeconds(30), "a ready node");
    }

    private static async Task StopAsync(List<ShoalProcess> processes)
    {
        foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
        foreach (var p in processes) await p.DisposeAsync();
    }

    private static async Task<ClusterEventDto?> ScaledAsync(HttpClient http, string prefix)
    {
        var events = await http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        return events!.LastOrDefault(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith(prefix, StringComparison.Ordinal));
    }

    /// <summary>One client sending chat completions one after another until stopped (at most 200, or <paramref name="count"/>).</summary>
    private static async Task<(int Sent, List<string> Failures)> ClientAsync(HttpClient edge, int client, CancellationToken stop, int count = 200)
    {
        var failures = new List<string>();
        var sent = 0;
        var clock = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested && sent < count && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            sent++;
            try
            {
                using var content = new StringContent($"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {client}\"}}],\"max_tokens\":10}}", Encoding.UTF8, "application/json");
                using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content, CancellationToken.None);
                var body = await response.Content.ReadAsStringAsync(CancellationToken.None);
                if (!response.IsSuccessStatusCode) failures.Add($"{(int)response.StatusCode} {body}");
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                failures.Add(e.Message);
            }
        }
        return (sent, failures);
    }
}
