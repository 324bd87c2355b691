using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Edge.Tests;

/// <summary>The hold queue under a few thousand requests for a cluster that never gets a replica (issue 15, must show 5, small version; the full one is `Shoal.Bench hold`).</summary>
public sealed class HoldLoadTests(ITestOutputHelper output)
{
    [Fact]
    [Trait(Categories.Name, Categories.EndToEnd)]
    public async Task Two_thousand_requests_for_a_cluster_that_never_becomes_ready_keep_the_limit_and_memory_and_are_all_answered_within_the_queue_timeout()
    {
        const int Requests = 2000;
        const int MaxHeld = 1500;
        var timeout = TimeSpan.FromSeconds(4);
        var slack = TimeSpan.FromSeconds(1.5);
        var table = new RouteTable
        {
            Version = 1,
            Clusters = new(StringComparer.Ordinal)
            {
                ["cold"] = TestEdge.Route("cold", [], queueTimeoutMs: (int)timeout.TotalMilliseconds) with { MaxHeld = MaxHeld },
            },
        };
        using var dir = new TempDirectory();
        var routes = Path.Combine(dir.Path, "routes.json");
        await File.WriteAllTextAsync(routes, JsonSerializer.Serialize(table, ShoalJsonContext.Default.RouteTable));
        await using var edge = ChildProcess.Start(ChildProcess.BuiltExecutable("tests/Shoal.Edge.TestHost", "Shoal.Edge.TestHost"), [routes, "10000"]);
        var address = new Uri(await edge.ListeningAsync(TimeSpan.FromSeconds(30)));
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue }) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
        // One request first, so the edge's code is loaded and the idle figure is the edge's, not the JIT's.
        using (var warm = await client.GetAsync("/c/cold/v1/models")) Assert.Equal(HttpStatusCode.ServiceUnavailable, warm.StatusCode);
        var idle = edge.PeakResidentBytes();
        // The clients' connections are opened first (each request then goes on one already open), so
        // a request's time is the edge's answer, not a connect queued behind two thousand others.
        await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ => Task.Run(async () =>
        {
            using var ok = await client.GetAsync("/healthz");
            ok.EnsureSuccessStatusCode();
        }))).WaitAsync(TimeSpan.FromMinutes(1));
        var connected = edge.PeakResidentBytes();

        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ => Task.Run(async () =>
        {
            var started = clock.Elapsed;
            try
            {
                using var response = await client.PostAsync("/c/cold/v1/completions", new StringContent("{\"prompt\":\"hello\"}"));
                var error = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse);
                var kind = response.StatusCode != HttpStatusCode.ServiceUnavailable || response.Headers.RetryAfter is null ? $"{(int)response.StatusCode} {error?.Error.Message}"
                    : error!.Error.Message.Contains("holds", StringComparison.Ordinal) ? "full" : "timeout";
                return (Kind: kind, Took: clock.Elapsed - started);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
            {
                return (Kind: e.Message, Took: clock.Elapsed - started);
            }
        }))).WaitAsync(TimeSpan.FromMinutes(1));
        var peak = edge.PeakResidentBytes();

        var full = results.Where(r => r.Kind == "full").ToList();
        var timedOut = results.Where(r => r.Kind == "timeout").ToList();
        output.WriteLine($"{Requests} requests in {clock.Elapsed.TotalSeconds:F1} s: {timedOut.Count} held until the timeout (answered after {timedOut.Min(r => r.Took).TotalSeconds:F2}–{timedOut.Max(r => r.Took).TotalSeconds:F2} s), {full.Count} refused as the queue was full (slowest {full.Max(r => r.Took).TotalMilliseconds:F0} ms); edge peak RSS {peak / 1048576.0:F0} MB, idle {idle / 1048576.0:F0} MB, with the connections open {connected / 1048576.0:F0} MB; {(peak - idle) / 1024.0 / Requests:F1} KiB per request and its connection");
        Assert.All(results, r => Assert.True(r.Kind is "full" or "timeout", r.Kind));
        Assert.Equal(MaxHeld, timedOut.Count);
        Assert.Equal(Requests - MaxHeld, full.Count);
        Assert.All(timedOut, r => Assert.InRange(r.Took, timeout - TimeSpan.FromMilliseconds(50), timeout + slack));
        Assert.All(full, r => Assert.True(r.Took < timeout, $"a refused request took {r.Took}"));
        Assert.True(peak - idle < 32L * 1024 * Requests, $"the edge grew by {(peak - idle) / 1048576} MB for {Requests} requests");
    }
}
