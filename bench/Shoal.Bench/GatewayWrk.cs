using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Core.Routing;

namespace Shoal.Bench;

/// <summary>
/// The gateway bench's throughput measured the way the proxy bench measures the edge: wrk (one
/// thread, C, it parses no header it does not need) and the backend (its own process, the same fixed
/// answer) pinned to CPU 0, this process (both edges) pinned to CPU 1, rounds alternating off and on.
/// What the ratio then shows is the edges' own cost per request: .NET's HttpClient, the in-process client of the main rounds, makes
/// two strings for every response header it does not know, so the six <c>x-ratelimit-*</c> headers
/// cost the client more than they cost the edge, on the same two cores. Each round also gives this
/// process's CPU time per request (both edges; the steadier figure when neighbours take CPU 1 at
/// times). BENCH_GATEWAY_WRK_ROUNDS and BENCH_GATEWAY_WRK_SECONDS set the rounds (default 10 × 3 s a
/// side); BENCH_GATEWAY_WRK_ONLY=on|off runs one side alone (for profiling).
/// </summary>
internal static class GatewayWrk
{
    public static async Task RunAsync(WebApplication offEdge, WebApplication onEdge, string key, string body, int rounds, int seconds, int connections)
    {
        if (ProxyBench.Which("wrk") is null || ProxyBench.Which("taskset") is null)
        {
            Console.WriteLine("wrk rounds skipped: wrk or taskset is missing (apt-get install -y wrk util-linux)");
            return;
        }
        var script = Path.Combine(Path.GetTempPath(), $"shoal-gateway-wrk-{Environment.ProcessId}.lua");
        await File.WriteAllTextAsync(script, $"""
            wrk.method = "POST"
            wrk.body = '{body}'
            wrk.headers["Content-Type"] = "application/json"
            """);
        using var self = Process.GetCurrentProcess();
        var affinity = OperatingSystem.IsLinux() ? (long)self.ProcessorAffinity : 3;
        var port = ProxyBench.FreePort();
        using var backend = ProxyBench.Start("taskset", ["-c", "0", "dotnet", typeof(GatewayWrk).Assembly.Location, "gateway-backend", port.ToString(CultureInfo.InvariantCulture)]);
        try
        {
            // Both edges send to the backend on CPU 0 from now on.
            var address = $"http://127.0.0.1:{port}";
            // Up when its one route answers a GET with 405 (it takes only POST).
            await ProxyBench.WaitForAsync(address + "/v1/chat/completions", 405);
            foreach (var edge in new[] { offEdge, onEdge })
            {
                var holder = (RouteTableHolder)edge.Services.GetRequiredService<IRouteTableSource>();
                var table = holder.Current;
                holder.Update(table with
                {
                    Version = table.Version + 1,
                    Clusters = table.Clusters.ToDictionary(kv => kv.Key, kv => kv.Value with
                    {
                        Destinations = [.. kv.Value.Destinations.Select(d => d with { Address = address })],
                    }, StringComparer.Ordinal),
                });
            }
            var offUrl = offEdge.Urls.First();
            var onUrl = onEdge.Urls.First();
            // CPU 1: both edges, every thread of this process (Process.ProcessorAffinity sets the main thread's only).
            await PinAsync(self.Id, "1");
            string[] cpu = ["-c", "0"];
            var header = $"Authorization: Bearer {key}";
            var path = "/c/demo/v1/chat/completions";
            // Warm-up on the pinned CPU (pools, tiering after the move).
            await ProxyBench.WrkAsync(offUrl.TrimEnd('/') + path, 2, cpu, script: script, connections: connections);
            await ProxyBench.WrkAsync(onUrl.TrimEnd('/') + path, 2, cpu, header, script, connections);
            var results = new Dictionary<string, List<ProxyBench.WrkResult>> { ["off"] = [], ["on"] = [] };
            for (var round = 0; round < rounds; round++)
            {
                var order = round % 2 == 0 ? new[] { "off", "on" } : ["on", "off"];
                foreach (var name in order)
                {
                    // For profiling one side alone: BENCH_GATEWAY_WRK_ONLY=on|off.
                    if (Environment.GetEnvironmentVariable("BENCH_GATEWAY_WRK_ONLY") is { Length: > 0 } only && only != name) continue;
                    self.Refresh();
                    var cpuBefore = self.TotalProcessorTime;
                    var r = name == "off"
                        ? await ProxyBench.WrkAsync(offUrl.TrimEnd('/') + path, seconds, cpu, script: script, connections: connections)
                        : await ProxyBench.WrkAsync(onUrl.TrimEnd('/') + path, seconds, cpu, header, script, connections);
                    if (r.Errors > 0) throw new InvalidOperationException($"wrk saw {r.Errors} errors against the '{name}' edge");
                    self.Refresh();
                    // This process's CPU time per request: the edge's own cost, steadier than the rate when neighbours take CPU 1 at times.
                    results[name].Add(r with { CpuUsPerRequest = (self.TotalProcessorTime - cpuBefore).TotalMicroseconds / Math.Max(1, r.Requests) });
                }
            }
            if (results["off"].Count == 0 || results["on"].Count == 0)
            {
                foreach (var (name, list) in results) foreach (var r in list) Console.WriteLine(Fmt($"{name}: {r.Rps:F0} req/s, {r.CpuUsPerRequest:F1} µs CPU per request"));
                return;
            }
            double Median(string name, Func<ProxyBench.WrkResult, double> f)
            {
                var sorted = results[name].Select(f).Order().ToArray();
                return sorted[(sorted.Length - 1) / 2];
            }
            var off = Median("off", r => r.Rps);
            var on = Median("on", r => r.Rps);
            Console.WriteLine(Fmt($"| wrk -t1 -c{connections}, {rounds} × {seconds} s per side, both edges pinned to CPU 1, wrk and the backend to CPU 0 | off | on | |"));
            Console.WriteLine(Fmt($"| throughput (median of rounds) | {off:F0} req/s | {on:F0} req/s | ratio {on / off:F3} |"));
            Console.WriteLine(Fmt($"| latency p50 / p99 (median of rounds) | {Median("off", r => r.P50Ms):F3} / {Median("off", r => r.P99Ms):F3} ms | {Median("on", r => r.P50Ms):F3} / {Median("on", r => r.P99Ms):F3} ms | |"));
            var offCpu = Median("off", r => r.CpuUsPerRequest);
            var onCpu = Median("on", r => r.CpuUsPerRequest);
            Console.WriteLine(Fmt($"| CPU per request (this process: both edges, median of rounds) | {offCpu:F1} µs | {onCpu:F1} µs | ratio off/on {offCpu / onCpu:F3} |"));
            var ratios = results["on"].Zip(results["off"], (a, b) => a.Rps / b.Rps).ToList();
            var sortedRatios = ratios.Order().ToArray();
            var medianRatio = (sortedRatios[(sortedRatios.Length - 1) / 2] + sortedRatios[sortedRatios.Length / 2]) / 2;
            Console.WriteLine(Fmt($"wrk rounds' throughput ratios: {string.Join(", ", ratios.Select(r => r.ToString("F3", CultureInfo.InvariantCulture)))} (median {medianRatio:F3})"));
            var cpuRatios = results["off"].Zip(results["on"], (a, b) => a.CpuUsPerRequest / b.CpuUsPerRequest).ToList();
            Console.WriteLine(Fmt($"wrk rounds' CPU ratios off/on: {string.Join(", ", cpuRatios.Select(r => r.ToString("F3", CultureInfo.InvariantCulture)))}"));
        }
        finally
        {
            await PinAsync(self.Id, string.Join(',', Enumerable.Range(0, 64).Where(cpu => (affinity >> cpu & 1) != 0)));
            File.Delete(script);
            backend.Kill();
            await backend.WaitForExitAsync();
        }
    }

    /// <summary>Sets the CPUs of every thread of process <paramref name="pid"/> (<c>taskset -a</c>); threads made later inherit their maker's.</summary>
    private static async Task PinAsync(int pid, string cpus)
    {
        using var taskset = ProxyBench.Start("taskset", ["-a", "-p", "-c", cpus, pid.ToString(CultureInfo.InvariantCulture)], capture: true);
        await taskset.StandardOutput.ReadToEndAsync();
        var error = await taskset.StandardError.ReadToEndAsync();
        await taskset.WaitForExitAsync();
        if (taskset.ExitCode != 0) throw new InvalidOperationException($"taskset -a -p -c {cpus} {pid} failed: {error}");
    }

    /// <summary><c>gateway-backend PORT</c>: the gateway bench's OpenAI-shaped backend in a process of its own.</summary>
    public static async Task BackendAsync(int port)
    {
        await using var app = GatewayBench.Backend($"http://127.0.0.1:{port}");
        await app.RunAsync();
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
