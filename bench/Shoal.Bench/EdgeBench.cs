using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge;
using Shoal.Sim;

/// <summary>Edge benchmarks: time to first token through the edge, and routing quality on a mixed fleet.</summary>
internal static class EdgeBench
{
    public static async Task TimeToFirstTokenAsync()
    {
        Console.WriteLine("## Edge: time to first token, direct vs through the edge (simulator, streaming)");
        await using var sim = SimServer.Build(new SimOptions { Port = 0, ReplicaId = "sim", BatchSlots = 16 });
        await sim.StartAsync();
        var routes = new RouteTableHolder();
        routes.Update(Table(("demo", BalancingPolicy.LeastOutstanding, [("sim", SimServer.Address(sim))])));
        await using var edge = await StartEdgeAsync(routes);
        using var direct = new HttpClient { BaseAddress = SimServer.Address(sim) };
        using var via = new HttpClient { BaseAddress = new Uri(edge.Urls.First()) };

        for (var i = 0; i < 20; i++)
        {
            await FirstTokenAsync(direct, "/v1/completions");
            await FirstTokenAsync(via, "/c/demo/v1/completions");
        }
        var d = new List<double>();
        var e = new List<double>();
        const int Requests = 200;
        for (var i = 0; i < Requests; i++)
        {
            d.Add(await FirstTokenAsync(direct, "/v1/completions"));
            e.Add(await FirstTokenAsync(via, "/c/demo/v1/completions"));
        }
        Console.WriteLine(Fmt($"direct: median {Pct(d, 50):F2} ms, p90 {Pct(d, 90):F2} ms; through the edge: median {Pct(e, 50):F2} ms, p90 {Pct(e, 90):F2} ms; added at the median {Pct(e, 50) - Pct(d, 50):F2} ms ({Requests} requests each, interleaved)"));
    }

    /// <summary>
    /// Two identical fleets (2 × rtx-4090 at speed 1.0, 2 × rtx-3090 at speed 0.5), one behind a
    /// least-outstanding cluster and one behind a round-robin cluster of the same edge, driven at the
    /// same moments by one open-loop (Poisson) arrival schedule at 80% of a fleet's capacity.
    /// </summary>
    public static async Task RoutingAsync(TimeSpan duration, double load)
    {
        const int Slots = 8;
        const int MaxTokens = 64;
        var probe = new SimOptions();
        // Saturated throughput of one simulator: all slots busy, each step makes one token per slot.
        double Capacity(double speed) => Slots / (probe.DecodePerToken.TotalSeconds * (1 + probe.BatchSlowdown * (Slots - 1)) / speed) / MaxTokens;
        var fleet = new (string Gpu, double Speed)[] { ("rtx-4090", 1.0), ("rtx-4090", 1.0), ("rtx-3090", 0.5), ("rtx-3090", 0.5) };
        var capacity = fleet.Sum(f => Capacity(f.Speed));
        var rate = capacity * load;
        Console.WriteLine(Fmt($"## Edge: routing quality, least-outstanding vs round-robin (2 x rtx-4090 + 2 x rtx-3090 each, {MaxTokens} tokens per request)"));
        Console.WriteLine(Fmt($"fleet capacity {capacity:F1} req/s; offered {rate:F1} req/s ({load:P0}) to each policy for {duration.TotalSeconds:F0} s"));

        var sims = new List<WebApplication>();
        var clusters = new List<(string, string, (string, Uri)[])>();
        foreach (var policy in new[] { BalancingPolicy.LeastOutstanding, BalancingPolicy.RoundRobin })
        {
            var destinations = new List<(string, Uri)>();
            for (var i = 0; i < fleet.Length; i++)
            {
                var id = $"{policy}-{fleet[i].Gpu}-{i}";
                var sim = SimServer.Build(new SimOptions { Port = 0, GpuType = fleet[i].Gpu, BatchSlots = Slots, ReplicaId = id, Seed = i });
                await sim.StartAsync();
                sims.Add(sim);
                destinations.Add((id, SimServer.Address(sim)));
            }
            clusters.Add((policy, policy, [.. destinations]));
        }
        var routes = new RouteTableHolder();
        routes.Update(Table([.. clusters]));
        await using var edge = await StartEdgeAsync(routes);
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue }) { BaseAddress = new Uri(edge.Urls.First()), Timeout = TimeSpan.FromMinutes(5) };

        var results = new Dictionary<string, List<double>> { [BalancingPolicy.LeastOutstanding] = [], [BalancingPolicy.RoundRobin] = [] };
        var errors = 0;
        var random = new Random(7);
        var warmUp = TimeSpan.FromSeconds(5);
        var pending = new List<Task>();
        var clock = Stopwatch.StartNew();
        var next = 0.0;
        while (next < (warmUp + duration).TotalSeconds)
        {
            var wait = TimeSpan.FromSeconds(next) - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
            var measured = next >= warmUp.TotalSeconds;
            foreach (var policy in results.Keys) pending.Add(SendAsync(policy, measured));
            next += -Math.Log(1 - random.NextDouble()) / rate;
        }
        await Task.WhenAll(pending);

        var lo = results[BalancingPolicy.LeastOutstanding];
        var rr = results[BalancingPolicy.RoundRobin];
        foreach (var (policy, latencies) in results)
        {
            Console.WriteLine(Fmt($"{policy}: {latencies.Count} requests, median {Pct(latencies, 50):F0} ms, p90 {Pct(latencies, 90):F0} ms, p99 {Pct(latencies, 99):F0} ms"));
        }
        Console.WriteLine(Fmt($"p99 least-outstanding / round-robin = {Pct(lo, 99) / Pct(rr, 99):F2} (goal <= 0.70); errors {errors}"));
        foreach (var sim in sims) await sim.DisposeAsync();

        async Task SendAsync(string policy, bool measured)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                using var response = await client.PostAsync($"/c/{policy}/v1/completions",
                    new StringContent($"{{\"model\":\"shoal-sim\",\"prompt\":\"benchmark prompt of a few words\",\"max_tokens\":{MaxTokens}}}", Encoding.UTF8, "application/json"));
                await response.Content.ReadAsByteArrayAsync();
                if (!response.IsSuccessStatusCode)
                {
                    Interlocked.Increment(ref errors);
                    return;
                }
            }
            catch (HttpRequestException)
            {
                Interlocked.Increment(ref errors);
                return;
            }
            if (!measured) return;
            var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            lock (results) results[policy].Add(ms);
        }
    }

    private static RouteTable Table(params (string Name, string Balancing, (string Id, Uri Address)[] Replicas)[] clusters)
    {
        var table = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal);
        foreach (var (name, balancing, replicas) in clusters)
        {
            table[name] = new ClusterRoute
            {
                Cluster = name,
                Public = true,
                Balancing = balancing,
                Destinations = [.. replicas.Select(r => new RouteDestination { ReplicaId = r.Id, NodeId = r.Id, Address = r.Address.ToString().TrimEnd('/') })],
            };
        }
        return new RouteTable { Version = 1, Clusters = table };
    }

    private static async Task<WebApplication> StartEdgeAsync(RouteTableHolder routes)
    {
        var options = new EdgeOptions { Listen = "127.0.0.1:0" };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseShoalEdgeKestrel(options);
        builder.Services.AddShoalEdge(options, routes);
        var app = builder.Build();
        app.MapShoalEdge();
        await app.StartAsync();
        return app;
    }

    private static async Task<double> FirstTokenAsync(HttpClient client, string path)
    {
        var clock = Stopwatch.StartNew();
        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new StringContent("{\"model\":\"shoal-sim\",\"prompt\":\"hello\",\"max_tokens\":4,\"stream\":true}", Encoding.UTF8, "application/json"),
        }, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[4096];
        if (await stream.ReadAsync(buffer) == 0) throw new InvalidOperationException("empty stream");
        var elapsed = clock.Elapsed.TotalMilliseconds;
        while (await stream.ReadAsync(buffer) > 0)
        {
        }
        return elapsed;
    }

    private static double Pct(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
