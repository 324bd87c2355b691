using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime;
using System.Text;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.Core.Access;
using Shoal.Core.Routing;
using Shoal.Core.Security;
using Shoal.Edge;
using Shoal.Testing;
using Microsoft.AspNetCore.Hosting;

namespace Shoal.Bench;

/// <summary>
/// <c>gateway [rounds] [requests per round] [clients]</c> (issue 16, must-show 5): two edges in one
/// process in front of one fast OpenAI-shaped backend (a fixed chat completion with <c>usage</c>).
/// <b>off</b>: a public cluster called without a key (no limits, no ledger). <b>on</b>: a private
/// cluster called with an endpoint key that has RPM, TPM and concurrency limits (far above the load,
/// so every request is checked and counted but none refused), token accounting (body inspection and
/// the usage tap) and the usage ledger spooled to disk. Rounds alternate the two; each round sends the
/// same small non-streaming requests, first one at a time (added latency), then from many clients
/// (throughput). Prints medians and p99 of the latency and the throughput ratio. The "on" edge ships
/// its ledger while it serves, as a standalone edge does (BENCH_GATEWAY_NO_SHIP=1 leaves that out;
/// BENCH_GATEWAY_SHIP_EVERY_MS=N waits N ms after each acknowledgement, for fewer, larger batches).
/// </summary>
internal static class GatewayBench
{
    private const string Key = "shoal_sk_gateway_bench_key";
    private const string Body = "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],\"max_tokens\":8}";
    private const string Answer = "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi hi hi hi hi hi hi hi\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17}}";

    public static async Task RunAsync(string[] args)
    {
        var rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
        var perRound = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2000;
        var clients = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 32;
        Console.WriteLine(Fmt($"## Gateway on vs off: small non-streaming chat completions, {rounds} rounds × {perRound} requests (sequential, then {clients} clients), {DateTime.UtcNow:yyyy-MM-dd}"));

        await using var app = Backend("http://127.0.0.1:0");
        await app.StartAsync();
        var backendUrl = app.Urls.First().TrimEnd('/');

        using var spool = new TempDirectory("shoal-gateway-bench");
        await using var off = await StartEdgeAsync(backendUrl, gateway: false, spool.Path);
        await using var on = await StartEdgeAsync(backendUrl, gateway: true, spool.Path);
        using var offClient = Client(off, key: null);
        using var onClient = Client(on, key: Key);

        // Warm-up: both paths JIT-compiled (tiered compilation done: it costs CPU in whichever round it
        // falls) and connections open. Sequential and concurrent, at least 3 rounds, until a round
        // compiles (almost) nothing more and spends (almost) no time in the JIT; at most 15 rounds.
        for (var i = 0; i < 500; i++)
        {
            await SendAsync(offClient);
            await SendAsync(onClient);
        }
        var warmRounds = 0;
        for (var warm = 0; warm < 15; warm++)
        {
            var compiledBefore = JitInfo.GetCompiledMethodCount();
            var jitTimeBefore = JitInfo.GetCompilationTime();
            foreach (var client in new[] { offClient, onClient })
            {
                for (var i = 0; i < 200; i++) await SendAsync(client);
                await LoadAsync(client, perRound, clients);
            }
            await Task.Delay(200);
            warmRounds++;
            if (warm >= 2 && JitInfo.GetCompiledMethodCount() - compiledBefore < 3 && JitInfo.GetCompilationTime() - jitTimeBefore < TimeSpan.FromMilliseconds(5)) break;
        }
        var jitBefore = JitInfo.GetCompilationTime();

        var sequential = new Dictionary<string, List<double>> { ["off"] = [], ["on"] = [] };
        var throughput = new Dictionary<string, List<double>> { ["off"] = [], ["on"] = [] };
        // CPU time of the whole process (client, backend, both edges) per request: steadier than the
        // throughput on a machine others share, and what the throughput ratio comes to on an idle one.
        var cpu = new Dictionary<string, List<double>> { ["off"] = [], ["on"] = [] };
        using var self = Process.GetCurrentProcess();
        var gcPause = new Dictionary<string, TimeSpan> { ["off"] = TimeSpan.Zero, ["on"] = TimeSpan.Zero };
        // Bytes allocated (whole process) and collections by generation, per side's throughput rounds.
        var allocated = new Dictionary<string, long> { ["off"] = 0, ["on"] = 0 };
        var collections = new Dictionary<string, int[]> { ["off"] = new int[3], ["on"] = new int[3] };
        var measured = new Dictionary<string, int> { ["off"] = 0, ["on"] = 0 };
        for (var round = 0; round < rounds; round++)
        {
            // Alternate which goes first, so drift in the machine's load falls on both.
            var order = round % 2 == 0 ? new[] { ("off", offClient), ("on", onClient) } : [("on", onClient), ("off", offClient)];
            foreach (var (name, client) in order)
            {
                if (Skipped(name)) continue;
                for (var i = 0; i < perRound / 4; i++)
                {
                    var t = Stopwatch.GetTimestamp();
                    await SendAsync(client);
                    sequential[name].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
            }
            foreach (var (name, client) in order)
            {
                if (Skipped(name)) continue;
                self.Refresh();
                var cpuBefore = self.TotalProcessorTime;
                var clock = Stopwatch.StartNew();
                var gcBefore = GC.GetTotalPauseDuration();
                var allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);
                var collectionsBefore = new[] { GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2) };
                await LoadAsync(client, perRound, clients);
                gcPause[name] += GC.GetTotalPauseDuration() - gcBefore;
                allocated[name] += GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore;
                for (var g = 0; g < 3; g++) collections[name][g] += GC.CollectionCount(g) - collectionsBefore[g];
                measured[name] += perRound;
                throughput[name].Add(perRound / clock.Elapsed.TotalSeconds);
                self.Refresh();
                cpu[name].Add((self.TotalProcessorTime - cpuBefore).TotalMicroseconds / perRound);
            }
        }

        var offP50 = Pct(sequential["off"], 50);
        var onP50 = Pct(sequential["on"], 50);
        var offP99 = Pct(sequential["off"], 99);
        var onP99 = Pct(sequential["on"], 99);
        Console.WriteLine(Fmt($"| one at a time | off | on | added |"));
        Console.WriteLine(Fmt($"| median latency | {offP50:F3} ms | {onP50:F3} ms | {(onP50 - offP50):F3} ms |"));
        Console.WriteLine(Fmt($"| p99 latency | {offP99:F3} ms | {onP99:F3} ms | {(onP99 - offP99):F3} ms |"));
        var offRps = Median(throughput["off"]);
        var onRps = Median(throughput["on"]);
        Console.WriteLine(Fmt($"| throughput, {clients} clients (median of rounds) | {offRps:F0} req/s | {onRps:F0} req/s | ratio {onRps / offRps:F3} |"));
        var offCpu = Median(cpu["off"]);
        var onCpu = Median(cpu["on"]);
        Console.WriteLine(Fmt($"| CPU per request, {clients} clients (whole process, median of rounds) | {offCpu:F0} µs | {onCpu:F0} µs | ratio off/on {offCpu / onCpu:F3} |"));
        var ratios = throughput["on"].Zip(throughput["off"], (a, b) => a / b).ToList();
        Console.WriteLine(Fmt($"rounds' throughput ratios: {string.Join(", ", ratios.Select(r => r.ToString("F3", CultureInfo.InvariantCulture)))} (median {Median(ratios):F3})"));
        Console.WriteLine(Fmt($"GC pauses in the throughput rounds: off {gcPause["off"].TotalMilliseconds:F0} ms, on {gcPause["on"].TotalMilliseconds:F0} ms; JIT time during the measured rounds: {(JitInfo.GetCompilationTime() - jitBefore).TotalMilliseconds:F0} ms (after {warmRounds} warm-up rounds)"));
        foreach (var name in new[] { "off", "on" })
        {
            if (measured[name] == 0) continue;
            Console.WriteLine(Fmt($"{name}: {allocated[name] / (double)measured[name]:F0} bytes allocated per request (whole process); collections gen0/gen1/gen2: {collections[name][0]}/{collections[name][1]}/{collections[name][2]}"));
        }
        var rows = Directory.EnumerateFiles(spool.Path, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Console.WriteLine(Fmt($"ledger spool written by the 'on' edge: {rows / 1024.0 / 1024.0:F1} MiB"));
        // The same edges under wrk, pinned apart from it (BENCH_GATEWAY_WRK_ROUNDS=0 leaves this out):
        // many short rounds, alternating, so a neighbour's burst on the machine falls on one pair, not on a side.
        var wrkRounds = int.Parse(Environment.GetEnvironmentVariable("BENCH_GATEWAY_WRK_ROUNDS") ?? "10", CultureInfo.InvariantCulture);
        var wrkSeconds = int.Parse(Environment.GetEnvironmentVariable("BENCH_GATEWAY_WRK_SECONDS") ?? "3", CultureInfo.InvariantCulture);
        if (wrkRounds > 0) await GatewayWrk.RunAsync(off, on, Key, Body, wrkRounds, wrkSeconds, clients);
        if (on.Services.GetService<Shoal.Edge.Gateway.UsageSpool>() is { } ledger)
        {
            await Task.Delay(500);
            Console.WriteLine(Fmt($"ledger rows (all rounds): {ledger.Recorded:N0} recorded, {ledger.Written:N0} written, {ledger.Acknowledged:N0} shipped and acknowledged, {ledger.Dropped + ledger.Failed:N0} lost"));
        }
    }

    /// <summary>The OpenAI-shaped backend: a fixed chat completion with <c>usage</c>, answered at once.</summary>
    internal static WebApplication Backend(string url)
    {
        var backend = WebApplication.CreateSlimBuilder();
        backend.Logging.ClearProviders();
        backend.WebHost.UseUrls(url);
        var app = backend.Build();
        var answer = Encoding.UTF8.GetBytes(Answer);
        app.MapPost("/v1/chat/completions", async (HttpContext ctx) =>
        {
            await ctx.Request.Body.CopyToAsync(Stream.Null);
            ctx.Response.ContentType = "application/json";
            ctx.Response.ContentLength = answer.Length;
            await ctx.Response.Body.WriteAsync(answer);
        });
        return app;
    }

    /// <summary>For profiling one side alone: BENCH_GATEWAY_ONLY=on|off leaves the other side's measured rounds out (both run in the warm-up).</summary>
    private static bool Skipped(string side) => Environment.GetEnvironmentVariable("BENCH_GATEWAY_ONLY") is { Length: > 0 } only && only != side;

    /// <summary><paramref name="count"/> requests from <paramref name="clients"/> concurrent clients.</summary>
    private static Task LoadAsync(HttpClient client, int count, int clients)
    {
        var left = count;
        return Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            while (Interlocked.Decrement(ref left) >= 0) await SendAsync(client);
        }));
    }

    private static async Task SendAsync(HttpClient client)
    {
        using var content = new StringContent(Body, Encoding.UTF8, "application/json");
        using var response = await client.PostAsync("/c/demo/v1/chat/completions", content);
        await response.Content.ReadAsByteArrayAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    private static HttpClient Client(WebApplication edge, string? key)
    {
        var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = new Uri(edge.Urls.First()) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private static async Task<WebApplication> StartEdgeAsync(string backend, bool gateway, string spoolRoot)
    {
        var routes = new RouteTableHolder();
        routes.Update(new RouteTable
        {
            Version = 1,
            Clusters = new(StringComparer.Ordinal)
            {
                ["demo"] = new ClusterRoute
                {
                    Cluster = "demo",
                    Project = "bench",
                    Public = !gateway,
                    Destinations = [new RouteDestination { ReplicaId = "r1", NodeId = "n1", Address = backend }],
                },
            },
        });
        var options = new EdgeOptions { Listen = "127.0.0.1:0", Name = gateway ? "on" : "off", SpoolDirectory = gateway && Environment.GetEnvironmentVariable("BENCH_GATEWAY_NO_LEDGER") != "1" ? Path.Combine(spoolRoot, "on") : null };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseShoalEdgeKestrel(options);
        if (gateway)
        {
            var keys = new EndpointKeyHolder();
            keys.Update(new Dictionary<string, EndpointKeyGrant>(StringComparer.Ordinal)
            {
                [Secrets.Hash(Key)] = new EndpointKeyGrant("bench", null)
                {
                    KeyId = "k-bench",
                    Limits = Environment.GetEnvironmentVariable("BENCH_GATEWAY_NO_LIMITS") == "1" ? null : new GatewayLimits { RequestsPerMinute = 100_000_000, TokensPerMinute = 100_000_000_000, MaxConcurrent = 100_000 },
                },
            });
            builder.Services.AddSingleton<IEndpointKeySource>(keys);
        }
        builder.Services.AddShoalEdge(options, routes);
        var edge = builder.Build();
        edge.MapShoalEdge();
        await edge.StartAsync();
        if (edge.Services.GetService<Shoal.Edge.Gateway.UsageSpool>() is { } spool && Environment.GetEnvironmentVariable("BENCH_GATEWAY_NO_SHIP") != "1") ShipLedger(edge, spool);
        return edge;
    }

    /// <summary>
    /// The "on" edge ships its ledger as a standalone edge does while it serves (the rows back from its
    /// spool in batches, the <see cref="UsageBatch"/> message made, the batch acknowledged 2 ms later,
    /// as a control plane storing it would), the WebSocket's send left out: the ledger's whole cost
    /// falls on the edge's CPU.
    /// </summary>
    private static void ShipLedger(WebApplication edge, Shoal.Edge.Gateway.UsageSpool spool)
    {
        var stopping = edge.Lifetime.ApplicationStopping;
        var every = int.TryParse(Environment.GetEnvironmentVariable("BENCH_GATEWAY_SHIP_EVERY_MS"), out var ms) ? ms : 0;
        // A doorbell as the edge's control client has: rung when records can be taken, no timer per wait.
        var doorbell = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
        spool.Available += () => doorbell.Writer.TryWrite(true);
        _ = Task.Run(async () =>
        {
            try
            {
                while (await doorbell.Reader.WaitToReadAsync(stopping))
                {
                    doorbell.Reader.TryRead(out _);
                    while (spool.TakeBatch() is { } batch)
                    {
                        // The control plane stores the batch and answers: a couple of milliseconds on a local network.
                        await Task.Delay(2, stopping);
                        spool.Acknowledge(batch.Sequence);
                        if (every > 0) await Task.Delay(every, stopping);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // The edge stops.
            }
        });
    }

    private static double Median(List<double> values) => Pct(values, 50);

    private static double Pct(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
