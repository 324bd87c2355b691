using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Identity;
using Shoal.Agent.Tunnels;
using Shoal.Contracts;

namespace Shoal.Bench;

/// <summary>
/// Proxy throughput and latency, side by side in one run: a small Kestrel backend called directly,
/// through nginx (one worker, upstream keep-alive), through the edge in direct mode, and through the
/// edge over tunnels. The proxies (nginx, the shoal server process hosting the edge) are pinned to
/// CPU 1; wrk, the backend and the tunnel agent (its own process) to CPU 0. Rounds alternate targets.
/// </summary>
internal static partial class ProxyBench
{
    private const int Connections = 32;

    public static async Task RunAsync(string[] args)
    {
        var seconds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 8;
        var rounds = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 3;
        // "pinned" (default): proxies on CPU 1, load generator side on CPU 0. "unpinned": every process
        // may use both CPUs (nginx still runs one worker), as in the issue's calibration.
        var pinned = !(args.Length > 3 && args[3] == "unpinned");
        // Seconds of load each target gets before the measured rounds (JIT tiering, pools).
        var warmup = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 2;
        // Another build of shoal (or a script that runs one with other settings), measured as a fifth target.
        var compare = Environment.GetEnvironmentVariable("SHOAL_BENCH_COMPARE");
        string[] Cpu(int cpu) => pinned ? ["-c", cpu.ToString(CultureInfo.InvariantCulture)] : ["-c", "0,1"];
        foreach (var tool in (string[])["wrk", "nginx", "taskset"])
        {
            if (Which(tool) is null) throw new InvalidOperationException($"{tool} is missing: apt-get install -y wrk nginx-light util-linux");
        }
        using var self = Process.GetCurrentProcess();
        if (OperatingSystem.IsLinux()) self.ProcessorAffinity = pinned ? 1 : 3; // CPU 0: load generator side

        var dir = BenchTempDirs.Create("shoal-proxy-bench-");
        var processes = new List<Process>();
        try
        {
            var backendPort = FreePort();
            processes.Add(Start("taskset", [.. Cpu(0), "dotnet", typeof(ProxyBench).Assembly.Location, "backend", backendPort.ToString(CultureInfo.InvariantCulture)]));
            await WaitForAsync($"http://127.0.0.1:{backendPort}/");

            var nginxPort = FreePort();
            var conf = Path.Combine(dir.FullName, "nginx.conf");
            await File.WriteAllTextAsync(conf, $$"""
                worker_processes 1;
                daemon off;
                pid {{dir.FullName}}/nginx.pid;
                error_log {{dir.FullName}}/error.log warn;
                events { worker_connections 4096; }
                http {
                    access_log off;
                    upstream backend { server 127.0.0.1:{{backendPort}}; keepalive 64; }
                    server {
                        listen 127.0.0.1:{{nginxPort}};
                        location / {
                            proxy_pass http://backend;
                            proxy_http_version 1.1;
                            proxy_set_header Connection "";
                        }
                    }
                }
                """);
            processes.Add(Start("taskset", [.. Cpu(1), "nginx", "-c", conf, "-p", dir.FullName]));
            await WaitForAsync($"http://127.0.0.1:{nginxPort}/");

            // Plain YARP (the documented direct-forwarding setup) on the proxies' CPU, like nginx.
            var yarpPort = FreePort();
            var yarp = Start("taskset", [.. Cpu(1), "dotnet", typeof(ProxyBench).Assembly.Location, "plain-yarp", yarpPort.ToString(CultureInfo.InvariantCulture), backendPort.ToString(CultureInfo.InvariantCulture)]);
            processes.Add(yarp);
            await WaitForAsync($"http://127.0.0.1:{yarpPort}/");

            // The control plane (no edge of its own) on the load generator's CPU: it is idle while wrk runs.
            var apiPort = FreePort();
            processes.Add(Start("taskset", [.. Cpu(0), ShoalExecutable(), "server", "--listen", $"127.0.0.1:{apiPort}", "--no-edge",
                "--data-dir", Path.Combine(dir.FullName, "server"), "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes"]));
            var api = new Uri($"http://127.0.0.1:{apiPort}");
            await WaitForAsync(api + "healthz");
            using var http = new HttpClient { BaseAddress = api };
            var operatorKey = (await File.ReadAllTextAsync(Path.Combine(dir.FullName, "server", "operator.key"))).Trim();
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", operatorKey);
            var keyFile = Path.Combine(dir.FullName, "server", "edge.key");

            // The edge as in production: a standalone `shoal edge` process fed by the server. A second
            // one from another build (SHOAL_BENCH_COMPARE) is measured against it in the same rounds.
            async Task<(int Port, Process Process)> StartEdgeAsync(string executable, string[]? environment = null)
            {
                var port = FreePort();
                var process = Start("taskset", [.. Cpu(1), "env", .. environment ?? [], executable, "edge", "--server", api.ToString(), "--key-file", keyFile,
                    "--listen", $"127.0.0.1:{port}", "--log-level", "Warning"]);
                processes.Add(process);
                await WaitForAsync($"http://127.0.0.1:{port}/healthz");
                return (port, process);
            }
            var (edgePort, edgeProcess) = await StartEdgeAsync(ShoalExecutable());
            // SHOAL_BENCH_COMPARE may name several builds (or wrapper scripts), comma-separated: each is a target.
            var compared = (compare ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries);
            var compareEdges = new List<(string Executable, int Port, Process Process)>();
            foreach (var executable in compared)
            {
                var (p, proc) = await StartEdgeAsync(executable);
                compareEdges.Add((executable, p, proc));
            }
            // The nodes connect after every edge has its route table (so it registered with the server):
            // then the tunnel node learns of every edge. Until a replica is ready, the edges answer 503.
            await CreateClusterAsync(http, "direct", "rtx-4090");
            await CreateClusterAsync(http, "tunnel", "rtx-3090");
            // The same direct route with an endpoint key checked on every request: what the key check costs.
            await CreateClusterAsync(http, "keyed", "rtx-4080", isPublic: false);
            var endpointKey = (await (await http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest { Name = "bench", Role = ApiKeyRoles.Endpoint, Project = "default" },
                ShoalJsonContext.Default.CreateApiKeyRequest)).Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!.Key;
            await WaitForAsync($"http://127.0.0.1:{edgePort}/c/direct/", 503);
            foreach (var c in compareEdges) await WaitForAsync($"http://127.0.0.1:{c.Port}/c/direct/", 503);

            await using var direct = await FakeNode.StartAsync(http, "direct-node", "rtx-4090", tunnel: false, backendPort);
            await using var tunneled = await FakeNode.StartAsync(http, "tunnel-node", "rtx-3090", tunnel: true, backendPort);
            await using var keyed = await FakeNode.StartAsync(http, "keyed-node", "rtx-4080", tunnel: false, backendPort);
            await direct.ReportReadyAsync();
            await keyed.ReportReadyAsync();
            await tunneled.ReportReadyAsync();
            // The tunnel node's agent side in its own process, as `shoal agent` would be, next to wrk and
            // the backend. SHOAL_BENCH_AGENT_ENV="NAME=value ..." runs it with more environment (runtime settings).
            var agentEnv = (Environment.GetEnvironmentVariable("SHOAL_BENCH_AGENT_ENV") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var agent = Start("taskset", [.. Cpu(0), "env", .. agentEnv, "dotnet", typeof(ProxyBench).Assembly.Location,
                "tunnel-agent", string.Join(',', tunneled.Edges), tunneled.Identity.NodeId, tunneled.Identity.NodeSecret, backendPort.ToString(CultureInfo.InvariantCulture)]);
            processes.Add(agent);
            await WaitForAsync($"http://127.0.0.1:{edgePort}/c/direct/");
            await WaitForAsync($"http://127.0.0.1:{edgePort}/c/tunnel/");
            await WaitForAsync($"http://127.0.0.1:{edgePort}/c/keyed/", 401);
            await WaitForAsync($"http://127.0.0.1:{edgePort}/c/keyed/", 200, endpointKey);

            // Each target with the process whose CPU time (with its children's) a round charges to it:
            // the backend for itself, nginx's master (its worker is a child), the edge process; tunnel
            // mode's agent side is counted on its own (AgentCpuUsPerRequest, from the agent process).
            const string Tunnel = "edge, tunnel mode";
            const string Keyed = "edge, direct mode, endpoint key";
            var authorization = "Authorization: Bearer " + endpointKey;
            var targets = new List<(string Name, string Url, int Pid, int[] AgentPids)>
            {
                ("backend (direct)", $"http://127.0.0.1:{backendPort}/", processes[0].Id, []),
                ("nginx", $"http://127.0.0.1:{nginxPort}/", processes[1].Id, []),
                ("plain YARP", $"http://127.0.0.1:{yarpPort}/", yarp.Id, []),
                ("edge, direct mode", $"http://127.0.0.1:{edgePort}/c/direct/", edgeProcess.Id, []),
                (Tunnel, $"http://127.0.0.1:{edgePort}/c/tunnel/", edgeProcess.Id, [agent.Id]),
                (Keyed, $"http://127.0.0.1:{edgePort}/c/keyed/", edgeProcess.Id, []),
            };
            string? HeaderFor(string name) => name == Keyed ? authorization : null;
            foreach (var other in compareEdges)
            {
                await WaitForAsync($"http://127.0.0.1:{other.Port}/c/direct/");
                targets.Add(($"edge, direct mode ({Path.GetFileName(other.Executable)})", $"http://127.0.0.1:{other.Port}/c/direct/", other.Process.Id, []));
            }
            if (Environment.GetEnvironmentVariable("SHOAL_BENCH_HOLD") is { Length: > 0 } hold)
            {
                // Profiling: keep the setup up for that many seconds and say where each target is.
                foreach (var (name, url, pid, agentPids) in targets) Console.WriteLine(Fmt($"{name}: {url} pid {pid} agent {string.Join(',', agentPids)}"));
                await Task.Delay(TimeSpan.FromSeconds(int.Parse(hold, CultureInfo.InvariantCulture)));
                return;
            }
            foreach (var (name, url, _, _) in targets) await WrkAsync(url, warmup, Cpu(0), HeaderFor(name)); // warm-up (JIT, pools)
            var results = targets.ToDictionary(t => t.Name, _ => new List<WrkResult>());
            for (var round = 0; round < rounds; round++)
            {
                foreach (var (name, url, pid, agentPids) in targets)
                {
                    var cpuBefore = TreeCpuSeconds(pid);
                    var agentBefore = agentPids.Sum(TreeCpuSeconds);
                    var r = await WrkAsync(url, seconds, Cpu(0), HeaderFor(name));
                    var requests = Math.Max(1, r.Requests);
                    r = r with
                    {
                        CpuUsPerRequest = (TreeCpuSeconds(pid) - cpuBefore) * 1e6 / requests,
                        AgentCpuUsPerRequest = (agentPids.Sum(TreeCpuSeconds) - agentBefore) * 1e6 / requests,
                    };
                    results[name].Add(r);
                    Console.Error.WriteLine(Fmt($"  round {round + 1} {name}: {r.Rps:F0} req/s, p50 {r.P50Ms:F2} ms, p99 {r.P99Ms:F2} ms, errors {r.Errors}, {r.CpuUsPerRequest:F1} CPU us/request (agent side {r.AgentCpuUsPerRequest:F1})"));
                }
            }

            Console.WriteLine(Fmt($"## Proxy: wrk -t1 -c{Connections} -d{seconds}s, {warmup} s warm-up, {rounds} alternated rounds, {(pinned ? "proxies pinned to CPU 1, wrk and backend to CPU 0" : "unpinned (nginx one worker)")} (medians of rounds)"));
            Console.WriteLine("| target | requests/s | p50 ms | p99 ms | errors | vs nginx | vs backend | CPU us/request | CPU vs nginx | agent side CPU us/request |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            var nginxRps = Median(results["nginx"].Select(r => r.Rps));
            var backendRps = Median(results["backend (direct)"].Select(r => r.Rps));
            var nginxCpu = Median(results["nginx"].Select(r => r.CpuUsPerRequest));
            double Of(string name, Func<WrkResult, double> f) => Median(results[name].Select(f));
            foreach (var (name, _, _, agentPids) in targets)
            {
                var rs = results[name];
                var rps = Of(name, r => r.Rps);
                var cpu = Of(name, r => r.CpuUsPerRequest);
                var agentCpu = agentPids.Length == 0 ? "" : Fmt($"{Of(name, r => r.AgentCpuUsPerRequest):F1}");
                Console.WriteLine(Fmt($"| {name} | {rps:F0} | {Of(name, r => r.P50Ms):F2} | {Of(name, r => r.P99Ms):F2} | {rs.Sum(r => r.Errors)} | {rps / nginxRps:F2}x | {rps / backendRps:F2}x | {cpu:F1} | {cpu / nginxCpu:F2}x | {agentCpu} |"));
            }
            const string Direct = "edge, direct mode";
            Console.WriteLine(Fmt($"tunnel mode / direct mode throughput: {Of(Tunnel, r => r.Rps) / Of(Direct, r => r.Rps):F2}x"));
            Console.WriteLine(Fmt($"endpoint key / public (direct mode): throughput {Of(Keyed, r => r.Rps) / Of(Direct, r => r.Rps):F2}x, p50 {Of(Keyed, r => r.P50Ms) - Of(Direct, r => r.P50Ms):+0.000;-0.000} ms, p99 {Of(Keyed, r => r.P99Ms) - Of(Direct, r => r.P99Ms):+0.000;-0.000} ms, CPU per request {Of(Keyed, r => r.CpuUsPerRequest) / Of(Direct, r => r.CpuUsPerRequest):F2}x"));
            Console.WriteLine(Fmt($"tunnel mode CPU per request, edge + agent side, / direct mode's: {(Of(Tunnel, r => r.CpuUsPerRequest) + Of(Tunnel, r => r.AgentCpuUsPerRequest)) / Of(Direct, r => r.CpuUsPerRequest):F2}x (agent environment: {(agentEnv.Length == 0 ? "default" : string.Join(' ', agentEnv))})"));
            foreach (var other in compareEdges)
            {
                var name = $"edge, direct mode ({Path.GetFileName(other.Executable)})";
                Console.WriteLine(Fmt($"{other.Executable} / edge direct mode: throughput {Of(name, r => r.Rps) / Of(Direct, r => r.Rps):F2}x, CPU per request {Of(name, r => r.CpuUsPerRequest) / Of(Direct, r => r.CpuUsPerRequest):F2}x"));
            }
        }
        finally
        {
            foreach (var p in processes)
            {
                try
                {
                    p.Kill(entireProcessTree: true);
                    await p.WaitForExitAsync();
                }
                catch (InvalidOperationException)
                {
                }
                p.Dispose();
            }
            BenchTempDirs.Remove(dir);
        }
    }

    /// <summary>The backend: a small Kestrel app answering every request with a short text body.</summary>
    public static async Task BackendAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        app.Run(static ctx =>
        {
            ctx.Response.ContentType = "text/plain";
            return ctx.Response.WriteAsync("Hello from the backend\n");
        });
        await app.RunAsync();
    }

    /// <summary>
    /// Plain YARP, as its documentation's direct-forwarding example sets it up: a slim web app whose
    /// every request goes to <c>IHttpForwarder.SendAsync</c> with a socket client (no proxy, redirects,
    /// cookies, decompression or activity headers). The floor for any edge built on YARP.
    /// </summary>
    public static async Task PlainYarpAsync(int port, int backendPort)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddHttpForwarder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        var forwarder = app.Services.GetRequiredService<Yarp.ReverseProxy.Forwarder.IHttpForwarder>();
        var client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
        });
        var destination = $"http://127.0.0.1:{backendPort}/";
        app.Run(async ctx => await Yarp.ReverseProxy.Forwarder.IHttpForwarderExtensions.SendAsync(forwarder, ctx, destination, client));
        await app.RunAsync();
    }

    internal readonly record struct WrkResult(double Rps, double P50Ms, double P99Ms, long Errors, long Requests, double CpuUsPerRequest = 0, double AgentCpuUsPerRequest = 0);

    /// <summary>The agent's tunnel side alone (as in <c>shoal agent</c>): tunnels to the edges, replica at <paramref name="backendPort"/>.</summary>
    public static async Task TunnelAgentAsync(string[] edges, string nodeId, string secret, int backendPort)
    {
        await using var tunnels = new TunnelManager(new TunnelOptions { IdlePerEdge = 8 }, p => p == backendPort, TimeProvider.System, NullLoggerFactory.Instance);
        tunnels.Update(new NodeIdentity { NodeId = nodeId, NodeSecret = secret }, edges);
        await Task.Delay(Timeout.Infinite);
    }

    /// <summary>User + system CPU seconds of a process and all its descendants, from /proc.</summary>
    private static double TreeCpuSeconds(int root)
    {
        var stats = new Dictionary<int, (int Parent, long Ticks)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var text = File.ReadAllText(Path.Combine(dir, "stat"));
                // After the command name in parentheses: state ppid ... utime(14) stime(15).
                var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
                stats[pid] = (int.Parse(fields[1], CultureInfo.InvariantCulture),
                    long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture));
            }
            catch (IOException)
            {
            }
        }
        long total = 0;
        var queue = new Queue<int>([root]);
        while (queue.Count > 0)
        {
            var pid = queue.Dequeue();
            if (stats.TryGetValue(pid, out var s)) total += s.Ticks;
            foreach (var (child, c) in stats) if (c.Parent == pid) queue.Enqueue(child);
        }
        return total / 100.0; // USER_HZ
    }

    /// <summary>One wrk run (one thread) on <paramref name="cpu"/>; <paramref name="script"/> is a Lua script for wrk (a POST with a body, say).</summary>
    internal static async Task<WrkResult> WrkAsync(string url, int seconds, string[] cpu, string? header = null, string? script = null, int connections = Connections)
    {
        using var p = Start("taskset", [.. cpu, "wrk", "-t1", $"-c{connections}", $"-d{seconds}s", "--latency",
            .. header is null ? Array.Empty<string>() : ["-H", header], .. script is null ? Array.Empty<string>() : ["-s", script], url], capture: true);
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        var rps = double.Parse(RpsRegex().Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        var errors = 0L;
        foreach (Match m in ErrorsRegex().Matches(output)) errors += long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        var non2xx = Non2xxRegex().Match(output);
        if (non2xx.Success) errors += long.Parse(non2xx.Groups[1].Value, CultureInfo.InvariantCulture);
        var requests = long.Parse(RequestsRegex().Match(output).Groups[1].Value, CultureInfo.InvariantCulture);
        return new WrkResult(rps, Latency(output, "50%"), Latency(output, "99%"), errors, requests);
    }

    private static double Latency(string output, string percentile)
    {
        var m = Regex.Match(output, $@"^\s*{Regex.Escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", RegexOptions.Multiline);
        var v = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        return m.Groups[2].Value switch { "us" => v / 1000, "s" => v * 1000, _ => v };
    }

    [GeneratedRegex(@"(\d+) requests in ")]
    private static partial Regex RequestsRegex();

    [GeneratedRegex(@"Requests/sec:\s+([\d.]+)")]
    private static partial Regex RpsRegex();

    [GeneratedRegex(@"(?:connect|read|write|timeout) (\d+)")]
    private static partial Regex ErrorsRegex();

    [GeneratedRegex(@"Non-2xx or 3xx responses: (\d+)")]
    private static partial Regex Non2xxRegex();

    private static async Task CreateClusterAsync(HttpClient http, string name, string gpu, bool isPublic = true) =>
        (await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = name, Public = isPublic, Image = "shoal/sim", Gpu = gpu, QueueTimeoutSeconds = 0 }, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();

    internal static async Task WaitForAsync(string url, int status = 200, string? bearer = null)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        if (bearer is not null) client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                if ((int)(await client.GetAsync(url)).StatusCode == status) return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{url} never answered {status}");
            await Task.Delay(50);
        }
    }

    internal static Process Start(string file, IEnumerable<string> args, bool capture = false)
    {
        var info = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = capture, RedirectStandardError = capture };
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    internal static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    internal static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    internal static string ShoalExecutable()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Shoal.slnx"))) d = d.Parent;
        var config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        return Path.Combine(d!.FullName, "src", "Shoal.Cli", "bin", config, "net10.0", "shoal");
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>A node played over the agent protocol, holding one ready replica at the backend's port.</summary>
    internal sealed class FakeNode : IAsyncDisposable
    {
        private readonly ClientWebSocket _ws;
        private readonly CancellationTokenSource _stop = new();
        private readonly int _port;
        private readonly SemaphoreSlim _send = new(1, 1);
        private Task? _heartbeats;
        private string? _replicaId;
        private long _revision;

        private FakeNode(ClientWebSocket ws, int port, NodeIdentity identity, string[] edges)
        {
            _ws = ws;
            _port = port;
            Identity = identity;
            Edges = edges;
        }

        public NodeIdentity Identity { get; }
        public string[] Edges { get; }

        public static async Task<FakeNode> StartAsync(HttpClient http, string name, string gpu, bool tunnel, int port)
        {
            var token = (await (await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest))
                .Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            var ws = new ClientWebSocket();
            ws.Options.SetRequestHeader(AgentProtocol.ProvisioningTokenHeader, token);
            ws.Options.SetRequestHeader(AgentProtocol.NodeNameHeader, name);
            await ws.ConnectAsync(new Uri(http.BaseAddress!.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath), CancellationToken.None);
            await SendAsync(ws, new HelloMessage
            {
                NodeName = name,
                Tunnel = tunnel,
                Runtimes = ["process"],
                Hardware = new NodeHardware { Gpus = [new GpuInfo { Index = 0, Uuid = $"GPU-{name}", Name = gpu, Type = gpu, MemoryMiB = 24576, Simulated = true }], CpuCores = 8, MemoryMiB = 32768 },
            });
            var welcome = (WelcomeMessage)(await ReceiveAsync(ws))!;
            return new FakeNode(ws, port, new NodeIdentity { NodeId = welcome.NodeId, NodeSecret = welcome.NodeSecret! }, welcome.Edges);
        }

        /// <summary>Waits for the replica assignment, reports it ready, and keeps heartbeating.</summary>
        public async Task ReportReadyAsync()
        {
            while (_replicaId is null)
            {
                if (await ReceiveAsync(_ws) is AssignmentsMessage { Replicas.Length: > 0 } a)
                {
                    _replicaId = a.Replicas[0].ReplicaId;
                    _revision = a.Revision;
                }
            }
            await HeartbeatAsync();
            _heartbeats = Task.Run(async () =>
            {
                var buffer = new byte[64 * 1024];
                var drain = Task.Run(async () =>
                {
                    while (!_stop.IsCancellationRequested) await _ws.ReceiveAsync(buffer, _stop.Token);
                });
                while (!_stop.IsCancellationRequested)
                {
                    await Task.Delay(1000, _stop.Token);
                    await HeartbeatAsync();
                }
                await drain;
            });
        }

        /// <summary>Reports the replica in <paramref name="state"/> right away (as an agent does on a change).</summary>
        public async Task ReportAsync(ReplicaState state)
        {
            _state = state;
            await HeartbeatAsync();
        }

        private ReplicaState _state = ReplicaState.Ready;

        private async Task HeartbeatAsync()
        {
            await _send.WaitAsync();
            try
            {
                await SendAsync(_ws, new HeartbeatMessage
                {
                    AppliedRevision = _revision,
                    Replicas = [new ReplicaReport { ReplicaId = _replicaId!, State = _state, Healthy = _state == ReplicaState.Ready, HostPort = _port }],
                });
            }
            finally
            {
                _send.Release();
            }
        }

        private static Task SendAsync(ClientWebSocket ws, AgentMessage message) =>
            ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage), WebSocketMessageType.Text, true, CancellationToken.None);

        private static async Task<AgentMessage?> ReceiveAsync(ClientWebSocket ws)
        {
            var buffer = new byte[1 << 20];
            var count = 0;
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close) return null;
                count += r.Count;
                if (r.EndOfMessage) break;
            }
            return JsonSerializer.Deserialize(buffer.AsSpan(0, count), ShoalJsonContext.Default.AgentMessage);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            if (_heartbeats is not null) await _heartbeats.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _ws.Abort();
            _ws.Dispose();
            _send.Dispose();
        }
    }
}
