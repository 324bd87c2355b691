using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge;

namespace Shoal.Bench;

/// <summary>
/// Issue 15, must show 5: requests held against a cluster that never becomes ready. The edge runs in
/// a process of its own (this assembly's <c>hold-edge</c> mode) so its memory is its own; the
/// bench sends every request at once and reads the edge's peak resident memory from <c>/proc</c>.
/// </summary>
internal static class HoldBench
{
    public static async Task RunAsync(int requests, int maxHeld, TimeSpan timeout)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"## Edge: hold queue, {requests:N0} requests for a cluster at zero (max held {maxHeld:N0}, queue timeout {timeout.TotalSeconds:F0} s)"));
        var dir = BenchTempDirs.Create("shoal-bench-hold-");
        var routes = Path.Combine(dir.FullName, "routes.json");
        var table = new RouteTable
        {
            Version = 1,
            Clusters = new(StringComparer.Ordinal)
            {
                ["cold"] = new ClusterRoute { Cluster = "cold", Public = true, QueueTimeoutMs = (int)timeout.TotalMilliseconds, MaxHeld = maxHeld },
            },
        };
        await File.WriteAllTextAsync(routes, JsonSerializer.Serialize(table, ShoalJsonContext.Default.RouteTable));
        using var edge = ProxyBench.Start("dotnet", [typeof(HoldBench).Assembly.Location, "hold-edge", routes, (requests * 2).ToString(CultureInfo.InvariantCulture)], capture: true);
        try
        {
            var line = await edge.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the edge exited: " + await edge.StandardError.ReadToEndAsync());
            var address = new Uri(line["listening ".Length..].Trim());
            using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, ConnectTimeout = TimeSpan.FromSeconds(30) })
            {
                BaseAddress = address,
                Timeout = timeout + TimeSpan.FromSeconds(60),
            };
            using (await client.GetAsync("/c/cold/v1/models"))
            {
            }
            var idle = PeakResident(edge.Id);
            // Every client's connection is opened first, so a request's time is the edge's answer,
            // not its connect queued behind thousands of others.
            var opening = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, requests).Select(_ => Task.Run(async () =>
            {
                using var ok = await client.GetAsync("/healthz");
                ok.EnsureSuccessStatusCode();
            })));
            var connected = PeakResident(edge.Id);
            var openSeconds = opening.Elapsed.TotalSeconds;

            var clock = Stopwatch.StartNew();
            var results = await Task.WhenAll(Enumerable.Range(0, requests).Select(_ => Task.Run(async () =>
            {
                var started = clock.Elapsed;
                try
                {
                    using var response = await client.PostAsync("/c/cold/v1/completions", new StringContent("{\"prompt\":\"hello\"}"));
                    var error = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse);
                    var kind = response.StatusCode != HttpStatusCode.ServiceUnavailable || response.Headers.RetryAfter is null ? "other"
                        : error!.Error.Message.Contains("holds", StringComparison.Ordinal) ? "full" : "timeout";
                    return (Kind: kind, Took: (clock.Elapsed - started).TotalSeconds);
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    return (Kind: "error", Took: (clock.Elapsed - started).TotalSeconds);
                }
            })));
            var peak = PeakResident(edge.Id);
            var timedOut = results.Where(r => r.Kind == "timeout").Select(r => r.Took).Order().ToArray();
            var full = results.Where(r => r.Kind == "full").Select(r => r.Took).Order().ToArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"held until the timeout: {timedOut.Length:N0}, answered after {Pct(timedOut, 0):F2} / {Pct(timedOut, 50):F2} / {Pct(timedOut, 99):F2} / {Pct(timedOut, 100):F2} s (min / median / p99 / max)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"refused, queue full: {full.Length:N0}, answered after {Pct(full, 50) * 1000:F0} / {Pct(full, 99) * 1000:F0} / {Pct(full, 100) * 1000:F0} ms (median / p99 / max); other answers or errors: {results.Count(r => r.Kind is "other" or "error")}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"edge resident memory (peak, VmHWM): idle {idle / 1048576.0:F0} MB; {requests:N0} connections open {connected / 1048576.0:F0} MB (opened in {openSeconds:F1} s); every request held or refused {peak / 1048576.0:F0} MB: {(peak - connected) / 1024.0 / requests:F1} KiB per request, {(peak - idle) / 1024.0 / requests:F1} KiB with its connection"));
        }
        finally
        {
            edge.Kill();
            await edge.WaitForExitAsync();
            BenchTempDirs.Remove(dir);
        }
    }

    /// <summary>The edge alone over a fixed route table: <c>hold-edge routes.json maxConnectionsPerAddress</c>.</summary>
    public static async Task EdgeAsync(string routesPath, int maxPerAddress)
    {
        var routes = new RouteTableHolder();
        routes.Update(JsonSerializer.Deserialize(await File.ReadAllTextAsync(routesPath), ShoalJsonContext.Default.RouteTable)!);
        var options = new EdgeOptions { Listen = "127.0.0.1:0", MaxConnectionsPerAddress = maxPerAddress };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseShoalEdgeKestrel(options);
        builder.Services.AddShoalEdge(options, routes);
        await using var app = builder.Build();
        app.MapShoalEdge();
        await app.StartAsync();
        Console.WriteLine("listening " + app.Urls.First());
        await app.WaitForShutdownAsync();
    }

    private static long PeakResident(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }

    private static double Pct(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
}
