using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Bench;

/// <summary>
/// <c>autoscale [png-path] [model-load-ms]</c>: a real <c>shoal server</c> and agent (8 simulated
/// rtx-4090s), an autoscaled cluster of the simulator (min 2, max 8, target 2 waiting per replica,
/// scale-down window 10 s, a simulated model load), then a load step: 4 clients for 10 s, 20 clients
/// (5×) for 30 s, none for 30 s. Reports the reaction (step → scale-up decision → new replicas ready),
/// the four cold-start parts, p99 latency before, during and after the ramp, failed requests, and
/// draws replicas and p99 over time (ScottPlot PNG).
/// </summary>
internal static class AutoscaleBench
{
    private const int BaseClients = 4;
    private const int StepClients = 20;
    private static readonly TimeSpan s_before = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_step = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan s_after = TimeSpan.FromSeconds(30);

    public static async Task RunAsync(string[] args)
    {
        var png = args.Length > 1 ? args[1] : "docs/autoscale-ramp.png";
        var modelLoadMs = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5000;
        using var dir = new TempDirectory("shoal-autoscale-bench");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        Console.WriteLine(Fmt($"## Autoscaling: load step 4 → 20 clients on a cluster of 2 simulator replicas (model load {modelLoadMs} ms), {DateTime.UtcNow:yyyy-MM-dd}"));
        var processes = new List<ShoalProcess>();
        try
        {
            var (http, edge) = await StartAsync(dir, apiPort, edgePort, gpus: 8, processes);
            using var api = http;
            using var endpoint = edge;
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Env = new()
                {
                    ["SIM_BATCH_SLOTS"] = "4",
                    ["SIM_DECODE_MS"] = "20",
                    ["SIM_STARTUP_DELAY_MS"] = modelLoadMs.ToString(CultureInfo.InvariantCulture),
                },
                Health = new HealthCheckSpec { IntervalMs = 200 },
                Autoscale = new AutoscaleRequest { Min = 2, Max = 8, TargetWaiting = 2, ScaleDownWindowSeconds = 10 },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            created.EnsureSuccessStatusCode();
            await UntilAsync(async () => (await StatusAsync(http)).Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(60));

            var clock = Stopwatch.StartNew();
            var start = DateTimeOffset.UtcNow;
            var samples = new ConcurrentQueue<(double At, double LatencyMs, bool Ok)>();
            var replicas = new List<(double At, int Desired, int Ready)>();
            using var stopAll = new CancellationTokenSource();
            using var stopStep = new CancellationTokenSource();
            var clients = Enumerable.Range(0, BaseClients).Select(i => ClientAsync(edge, i, clock, samples, stopAll.Token)).ToList();
            var sampler = SampleAsync(http, clock, replicas, stopAll.Token);
            await Task.Delay(s_before);
            var step = DateTimeOffset.UtcNow;
            var stepAt = clock.Elapsed.TotalSeconds;
            clients.AddRange(Enumerable.Range(BaseClients, StepClients - BaseClients).Select(i => ClientAsync(edge, i, clock, samples, stopStep.Token)));
            await Task.Delay(s_step);
            await stopStep.CancelAsync();
            var endAt = clock.Elapsed.TotalSeconds;
            await stopAll.CancelAsync();
            await Task.WhenAll(clients);
            // Load gone (the base clients too): the window and the drain.
            using var quiet = new CancellationTokenSource(s_after);
            await SampleAsync(http, clock, replicas, quiet.Token);
            await sampler;

            var events = (await http.GetFromJsonAsync("/v1/clusters/demo/events?limit=1000", ShoalJsonContext.Default.ClusterEventDtoArray))!;
            var status = await StatusAsync(http);
            var up = events.FirstOrDefault(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled up", StringComparison.Ordinal) && e.At >= step);
            var all = samples.ToArray();
            Console.WriteLine(Fmt($"requests: {all.Length}, failed {all.Count(s => !s.Ok)}"));
            if (up is not null)
            {
                var readyAfter = events.Where(e => e.Type == ClusterEventTypes.Ready && e.At > up.At).Select(e => e.At).OrderBy(t => t).ToList();
                Console.WriteLine(Fmt($"load step → scale-up decision: {(up.At - step).TotalMilliseconds:F0} ms ({up.Message})"));
                if (readyAfter.Count > 0)
                {
                    Console.WriteLine(Fmt($"decision → first new replica ready: {(readyAfter[0] - up.At).TotalMilliseconds:F0} ms, → last: {(readyAfter[^1] - up.At).TotalMilliseconds:F0} ms ({readyAfter.Count} replicas, model load {modelLoadMs} ms)"));
                }
            }
            foreach (var e in events.Where(e => e.Type == ClusterEventTypes.Scaled && e.At >= start)) Console.WriteLine(Fmt($"  +{(e.At - start).TotalSeconds:F1} s {e.Message}"));
            Console.WriteLine(Fmt($"p99 latency before the step {P99(all, 0, stepAt):F0} ms, during the ramp (first 15 s) {P99(all, stepAt, stepAt + 15):F0} ms, after it {P99(all, stepAt + 15, endAt):F0} ms; median before {Pct(all, 0, stepAt, 50):F0} ms"));
            if (status.Cluster.ColdStart is { } cold)
            {
                Console.WriteLine("cold start (p50 / p90 / max over recent replicas): " + string.Join(", ",
                    Part("waiting for a node", cold.NodeWait), Part("image pull", cold.ImagePull), Part("start until healthy", cold.Start), Part("warm-up", cold.WarmUp)));
            }
            Console.WriteLine(Fmt($"final: {status.Cluster.Replicas} replicas ({status.Cluster.ReadyReplicas} ready)"));
            Chart(png, all, replicas, stepAt, endAt);
            Console.WriteLine($"chart: {png}");
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    /// <summary>
    /// <c>autoscale-zero [burst] [model-load-ms] [cold-edge]</c> (issue 15, must-show 1): a cluster at 0 replicas
    /// (min 0, concurrency target 250 per replica, simulated model load) gets a burst of concurrent
    /// requests. Reports failed requests, the scale-up decisions (exactly what the target asks: no
    /// duplicates), every held request answered, and the first answer against the first replica ready
    /// (goal: within 250 ms of it, i.e. within cold start + 250 ms), with the cold start's parts. The
    /// replicas decode 1 ms a token, so the first answer's own generation (16 tokens) does not hide
    /// how long the edge took to release the held requests to the new replica.
    /// </summary>
    public static async Task RunFromZeroAsync(string[] args)
    {
        var burst = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1000;
        var modelLoadMs = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5000;
        // "cold-edge": the burst is the edge's first forwarding ever (a server just started), else the edge has forwarded before, as one in service has.
        var warm = !(args.Length > 3 && args[3] == "cold-edge");
        const int target = 250;
        var expected = (burst + target - 1) / target;
        using var dir = new TempDirectory("shoal-autoscale-zero-bench");
        var processes = new List<ShoalProcess>();
        Console.WriteLine(Fmt($"## Autoscaling from zero: a burst of {burst} requests, model load {modelLoadMs} ms, concurrency target {target} per replica, {(warm ? "edge in service (it forwarded before)" : "edge's first forwarding ever")}, {DateTime.UtcNow:yyyy-MM-dd}"));
        try
        {
            var (http, edge) = await StartAsync(dir, FreePort.Next(), FreePort.Next(), gpus: expected + 3, processes, trace: true);
            using var api = http;
            using var endpoint = edge;
            if (warm) await WarmEdgeAsync(http, edge);
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 0,
                Env = new() { ["SIM_STARTUP_DELAY_MS"] = modelLoadMs.ToString(CultureInfo.InvariantCulture), ["SIM_BATCH_SLOTS"] = "32", ["SIM_DECODE_MS"] = "1" },
                Health = new HealthCheckSpec { IntervalMs = 100 },
                QueueTimeoutSeconds = 120,
                MaxHeld = Math.Max(burst, BalancingPolicy.DefaultMaxHeld),
                Autoscale = new AutoscaleRequest { Min = 0, Max = expected + 2, TargetWaiting = 0, TargetConcurrency = target, ScaleToZeroAfterSeconds = 600 },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            created.EnsureSuccessStatusCode();
            await UntilAsync(async () => (await StatusAsync(http)).Cluster.Replicas == 0, TimeSpan.FromSeconds(30));

            var began = DateTimeOffset.UtcNow;
            var clock = Stopwatch.StartNew();
            var answers = await Task.WhenAll(Enumerable.Range(0, burst).Select(async i =>
            {
                try
                {
                    using var content = new StringContent($"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {i}\"}}],\"max_tokens\":16}}", Encoding.UTF8, "application/json");
                    using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content, CancellationToken.None);
                    await response.Content.ReadAsStringAsync(CancellationToken.None);
                    return (Ms: clock.Elapsed.TotalMilliseconds, Status: (int)response.StatusCode);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    return (Ms: clock.Elapsed.TotalMilliseconds, Status: 0);
                }
            }));
            var events = (await http.GetFromJsonAsync("/v1/clusters/demo/events?limit=1000", ShoalJsonContext.Default.ClusterEventDtoArray))!;
            var status = await StatusAsync(http);
            var ups = events.Where(e => e.Type == ClusterEventTypes.Scaled && e.Message.StartsWith("scaled up", StringComparison.Ordinal)).ToList();
            var ok = answers.Where(a => a.Status == 200).Select(a => a.Ms).Order().ToArray();
            var firstReady = status.Replicas.Where(r => r.ReadyAt is not null).Select(r => r.ReadyAt!.Value).DefaultIfEmpty(began).Min();
            var firstAnswer = ok.Length == 0 ? double.NaN : ok[0];
            var readyMs = (firstReady - began).TotalMilliseconds;
            Console.WriteLine(Fmt($"requests: {burst}, answered 200: {ok.Length}, failed: {burst - ok.Length}"));
            foreach (var e in ups) Console.WriteLine(Fmt($"  +{(e.At - began).TotalMilliseconds:F0} ms {e.Message}"));
            Console.WriteLine(Fmt($"replicas: {status.Cluster.Replicas} (the target asks for {expected}), scale-up events {ups.Count}"));
            Console.WriteLine(Fmt($"first replica ready {readyMs:F0} ms after the burst began; first answer {firstAnswer:F0} ms: {firstAnswer - readyMs:F0} ms after it (goal ≤ 250 ms)"));
            PrintReadyToAnswer(began, firstReady, events, processes[0].Output, began.AddMilliseconds(firstAnswer));
            Console.WriteLine(Fmt($"answers: p50 {Pick(ok, 50):F0} ms, p99 {Pick(ok, 99):F0} ms, last {(ok.Length == 0 ? 0 : ok[^1]):F0} ms"));
            if (status.Cluster.ColdStart is { } cold)
            {
                Console.WriteLine("cold start (p50 / p90 / max): " + string.Join(", ",
                    Part("waiting for a node", cold.NodeWait), Part("image pull", cold.ImagePull), Part("start until healthy", cold.Start), Part("warm-up", cold.WarmUp)));
            }
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    /// <summary>
    /// Cold starts of a Docker image from zero, in four parts: a server and one agent on the docker runtime (host
    /// networking, simulated GPUs), the busybox httpd image of the <c>container</c> bench (imported, so present on
    /// the node: its pull is the agent's check of the image, no registry), and per round a new cluster at 0
    /// replicas (autoscaling, min 0) that gets one request through the edge: the edge holds it, the cluster wakes,
    /// the container starts, its health check passes, the held request is served. The parts are what
    /// <c>GET /v1/clusters/{name}</c> reports (<c>ColdStart</c>).
    /// </summary>
    public static async Task RunDockerColdStartAsync(string[] args)
    {
        var rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
        using (var client = Shoal.Agent.Runtimes.Docker.DockerRuntime.CreateClient(null)) await ContainerStart.ImportImageAsync(client);
        using var dir = new TempDirectory("shoal-coldstart-docker-bench");
        var processes = new List<ShoalProcess>();
        Console.WriteLine(Fmt($"## Cold start of a Docker image from zero: busybox httpd (present on the node), {rounds} rounds, {DateTime.UtcNow:yyyy-MM-dd}"));
        try
        {
            var (http, edge) = await StartAsync(dir, FreePort.Next(), FreePort.Next(), gpus: rounds, processes, docker: true);
            using var api = http;
            using var endpoint = edge;
            var parts = new List<(double Wait, double Pull, double Start, double Warm, double Answer)>();
            for (var round = 0; round < rounds; round++)
            {
                var name = $"web{round}";
                var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
                {
                    Name = name,
                    Image = "shoal-bench/web:1",
                    Gpu = "rtx-4090",
                    Replicas = 0,
                    Health = new HealthCheckSpec { Path = "/health", IntervalMs = 100 },
                    Autoscale = new AutoscaleRequest { Min = 0, Max = 1, TargetWaiting = 0, TargetConcurrency = 10, ScaleToZeroAfterSeconds = 600 },
                }, ShoalJsonContext.Default.CreateClusterRequest);
                created.EnsureSuccessStatusCode();
                // The edge learns of the new cluster with its next route table (until then: 404, no such cluster).
                await Task.Delay(TimeSpan.FromSeconds(1));
                var clock = Stopwatch.StartNew();
                using var response = await edge.GetAsync($"/c/{name}/health");
                await response.Content.ReadAsStringAsync();
                var answered = clock.Elapsed.TotalMilliseconds;
                if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"round {round}: {(int)response.StatusCode}");
                ColdStartDto? cold = null;
                await UntilAsync(async () =>
                {
                    cold = (await http.GetFromJsonAsync($"/v1/clusters/{name}", ShoalJsonContext.Default.ClusterDto))!.ColdStart;
                    return cold?.WarmUp is not null;
                }, TimeSpan.FromSeconds(30));
                var row = (cold!.NodeWait?.P50Ms ?? double.NaN, cold.ImagePull?.P50Ms ?? double.NaN, cold.Start?.P50Ms ?? double.NaN, cold.WarmUp?.P50Ms ?? double.NaN, answered);
                parts.Add(row);
                Console.WriteLine(Fmt($"round {round + 1}: waiting for a node {row.Item1:F0} ms, image pull {row.Item2:F0} ms, start until healthy {row.Item3:F0} ms, warm-up {row.Item4:F0} ms; the held request answered {answered:F0} ms after it was sent"));
            }
            double Median(Func<(double Wait, double Pull, double Start, double Warm, double Answer), double> f) => Pick([.. parts.Select(f).Order()], 50);
            Console.WriteLine(Fmt($"median of {rounds}: waiting for a node {Median(p => p.Wait):F0} ms, image pull {Median(p => p.Pull):F0} ms, start until healthy {Median(p => p.Start):F0} ms, warm-up {Median(p => p.Warm):F0} ms; request sent → answered {Median(p => p.Answer):F0} ms"));
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    // The server's two log categories whose lines time the way from a ready replica to the first answer (at Debug; the rest stays at Warning); log timestamps in UTC.
    private static readonly Dictionary<string, string> s_serverTrace = new()
    {
        ["TZ"] = "UTC",
        ["Logging__LogLevel__Shoal.Edge.Routing.HoldReleaser"] = "Debug",
        ["Logging__LogLevel__Shoal.Edge.Control.EdgeDemandReporter"] = "Debug",
    };

    /// <summary>
    /// Where the time from the first replica ready to the first answer goes, from the processes'
    /// own records: the agent's probe passing (ReadyAt; the agent sends a heartbeat at once), the server taking the
    /// heartbeat (the replica's "ready" event), the in-process edge's release passes (log), the
    /// edge's first finished response of a replica (log), the client's first answer.
    /// </summary>
    private static void PrintReadyToAnswer(DateTimeOffset began, DateTimeOffset ready, ClusterEventDto[] events, string serverLog, DateTimeOffset answer)
    {
        var heard = events.Where(e => e.Type == ClusterEventTypes.Ready && e.At >= began).Select(e => (DateTimeOffset?)e.At).Min();
        var passes = LogLines(serverLog, began, "held requests of cluster demo ").ToList();
        var served = LogLines(serverLog, began, "of cluster demo finished its first response").Select(l => (DateTimeOffset?)l.At).FirstOrDefault();
        string At(DateTimeOffset? t) => t is { } v ? Fmt($"{(v - ready).TotalMilliseconds,6:F0} ms") : "     - ";
        Console.WriteLine("from the first replica ready to the first answer (ms after ready; log lines have 1 ms resolution):");
        Console.WriteLine($"  {At(ready)}  agent: health probe passed (ReadyAt), heartbeat goes out at once");
        Console.WriteLine($"  {At(heard)}  server: heartbeat applied (replica's ready event)");
        if (passes.Count > 0)
        {
            var first = passes[0];
            var ms = double.Parse(Between(first.Text, " in ", " ms"), CultureInfo.InvariantCulture);
            Console.WriteLine($"  {At(first.At.AddMilliseconds(-ms))}  edge: first release pass began (route table with the replica in effect)");
            Console.WriteLine($"  {At(first.At)}  edge: {first.Text}");
            var total = passes.Sum(p => int.Parse(Between(p.Text, "Released ", " held"), CultureInfo.InvariantCulture));
            Console.WriteLine(Fmt($"           edge: {passes.Count} release passes released {total} requests, the last at {(passes[^1].At - ready).TotalMilliseconds:F0} ms"));
        }
        Console.WriteLine($"  {At(served)}  edge: first response from a replica finished");
        Console.WriteLine($"  {At(answer)}  client: first answer read");
    }

    private static IEnumerable<(DateTimeOffset At, string Text)> LogLines(string log, DateTimeOffset after, string containing)
    {
        foreach (var line in log.Split('\n'))
        {
            var i = line.IndexOf(containing, StringComparison.Ordinal);
            if (i < 0 || line.Length < 12 || !TimeSpan.TryParseExact(line[..12], @"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture, out var time)) continue;
            var at = new DateTimeOffset(after.UtcDateTime.Date + time, TimeSpan.Zero);
            if (at < after.AddSeconds(-1)) continue;
            var text = line.IndexOf("] ", StringComparison.Ordinal) is var j and >= 0 ? line[(j + 2)..] : line[13..];
            yield return (at, text.Trim());
        }
    }

    private static string Between(string text, string from, string to)
    {
        var i = text.IndexOf(from, StringComparison.Ordinal) + from.Length;
        return text[i..text.IndexOf(to, i, StringComparison.Ordinal)];
    }

    private static double Pick(double[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    /// <summary>A server and one agent with <paramref name="gpus"/> simulated rtx-4090s (process runtime); clients for the API (operator key) and the edge (an endpoint key).</summary>
    private static async Task<(HttpClient Http, HttpClient Edge)> StartAsync(TempDirectory dir, int apiPort, int edgePort, int gpus, List<ShoalProcess> processes, bool trace = false, bool docker = false)
    {
        processes.Add(ShoalProcess.Start("server",
        [
            "server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
            "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes", "--heartbeat-interval", "500ms",
        ], trace ? s_serverTrace : null));
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
        await WaitUpAsync(http);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")));
        var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(60) };
        edge.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await ApiKeys.CreateAsync(http));
        var tokenResponse = await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1 }, ShoalJsonContext.Default.CreateTokenRequest);
        tokenResponse.EnsureSuccessStatusCode();
        var token = (await tokenResponse.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
        processes.Add(ShoalProcess.Start("node",
        [
            "agent", "--server", http.BaseAddress!.ToString(), "--token", token, "--name", "node", "--simulate-gpus", $"rtx-4090:{gpus}",
            "--data-dir", dir.Combine("node"), "--log-level", "Warning",
            .. docker ? (string[])["--runtime", "docker", "--docker-network", "host", "--allow-host-network"] : ["--enable-process-runtime", "--runtime", "process"],
        ]));
        await UntilAsync(async () => (await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.Any(n => n.State == NodeState.Ready), TimeSpan.FromSeconds(60));

        return (http, edge);
    }

    private static string Part(string name, LatencySummary? s) => s is null ? $"{name} -" : Fmt($"{name} {s.P50Ms:F0} / {s.P90Ms:F0} / {s.MaxMs:F0} ms");

    private static async Task ClientAsync(HttpClient edge, int client, Stopwatch clock, ConcurrentQueue<(double, double, bool)> samples, CancellationToken stop)
    {
        var sent = 0;
        while (!stop.IsCancellationRequested && sent++ < 10_000)
        {
            var began = clock.Elapsed;
            bool ok;
            try
            {
                using var content = new StringContent($"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {client}\"}}],\"max_tokens\":16}}", Encoding.UTF8, "application/json");
                using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content, CancellationToken.None);
                await response.Content.ReadAsStringAsync(CancellationToken.None);
                ok = response.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                ok = false;
            }
            samples.Enqueue((clock.Elapsed.TotalSeconds, (clock.Elapsed - began).TotalMilliseconds, ok));
        }
    }

    private static async Task SampleAsync(HttpClient http, Stopwatch clock, List<(double, int, int)> replicas, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var s = await StatusAsync(http);
                lock (replicas) replicas.Add((clock.Elapsed.TotalSeconds, s.Cluster.Replicas, s.Cluster.ReadyReplicas));
                await Task.Delay(250, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private static void Chart(string path, (double At, double LatencyMs, bool Ok)[] samples, List<(double At, int Desired, int Ready)> replicas, double stepAt, double endAt)
    {
        var plot = new ScottPlot.Plot();
        var xs = replicas.Select(r => r.At).ToArray();
        var desired = plot.Add.ScatterLine(xs, replicas.Select(r => (double)r.Desired).ToArray());
        desired.LegendText = "replicas (desired)";
        var ready = plot.Add.ScatterLine(xs, replicas.Select(r => (double)r.Ready).ToArray());
        ready.LegendText = "replicas (ready)";
        var seconds = Enumerable.Range(0, (int)Math.Ceiling(samples.Length == 0 ? 0 : samples.Max(s => s.At))).ToArray();
        var p99 = seconds.Select(t => (T: t + 0.5, P: P99(samples, t, t + 1))).Where(x => x.P > 0).ToArray();
        var latency = plot.Add.ScatterLine(p99.Select(x => x.T).ToArray(), p99.Select(x => x.P).ToArray());
        latency.LegendText = "p99 latency (ms, per second)";
        latency.Axes.YAxis = plot.Axes.Right;
        plot.Add.VerticalLine(stepAt).LegendText = "load step (4 → 20 clients)";
        plot.Add.VerticalLine(endAt).LegendText = "load stops";
        plot.Axes.Bottom.Label.Text = "seconds";
        plot.Axes.Left.Label.Text = "replicas";
        plot.Axes.Right.Label.Text = "p99 latency (ms)";
        plot.Title("Autoscaling on waiting requests: load step on a cluster of 2");
        plot.ShowLegend();
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        plot.SavePng(full, 1000, 500);
    }

    private static double P99((double At, double LatencyMs, bool Ok)[] samples, double from, double to) => Pct(samples, from, to, 99);

    private static double Pct((double At, double LatencyMs, bool Ok)[] samples, double from, double to, double p)
    {
        var values = samples.Where(s => s.At >= from && s.At < to).Select(s => s.LatencyMs).Order().ToArray();
        return values.Length == 0 ? 0 : values[Math.Clamp((int)Math.Ceiling(p / 100 * values.Length) - 1, 0, values.Length - 1)];
    }

    private static async Task<ClusterStatusDto> StatusAsync(HttpClient http, string cluster = "demo") =>
        (await http.GetFromJsonAsync($"/v1/clusters/{cluster}/status", ShoalJsonContext.Default.ClusterStatusDto))!;

    /// <summary>
    /// Puts the edge in the state of one in service: a cluster of one replica answers a few rounds
    /// of requests through it (its forwarding path past its first, JIT-compiled runs), then goes away.
    /// </summary>
    private static async Task WarmEdgeAsync(HttpClient http, HttpClient edge)
    {
        var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
        {
            Name = "warm",
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Replicas = 1,
            Env = new() { ["SIM_BATCH_SLOTS"] = "32", ["SIM_DECODE_MS"] = "1" },
            Health = new HealthCheckSpec { IntervalMs = 100 },
        }, ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();
        await UntilAsync(async () => (await StatusAsync(http, "warm")).Cluster.ReadyReplicas == 1, TimeSpan.FromSeconds(60));
        for (var round = 0; round < 3; round++)
        {
            await Task.WhenAll(Enumerable.Range(0, 32).Select(async i =>
            {
                using var content = new StringContent($"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"warm {i}\"}}],\"max_tokens\":16}}", Encoding.UTF8, "application/json");
                using var response = await edge.PostAsync("/c/warm/v1/chat/completions", content);
                response.EnsureSuccessStatusCode();
            }));
        }
        (await http.DeleteAsync("/v1/clusters/warm")).EnsureSuccessStatusCode();
    }

    private static async Task WaitUpAsync(HttpClient http) => await UntilAsync(async () =>
    {
        try
        {
            return (await http.GetAsync("/healthz")).IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }, TimeSpan.FromSeconds(60));

    private static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > timeout) throw new TimeoutException("the benchmark's setup did not finish in time");
            await Task.Delay(200);
        }
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
