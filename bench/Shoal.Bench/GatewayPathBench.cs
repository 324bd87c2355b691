using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Contracts;
using Shoal.Core.Security;
using Shoal.Edge;
using Shoal.Edge.Access;
using Shoal.Edge.Gateway;
using Shoal.Core.Access;
using Shoal.Core.Routing;
using Shoal.Testing;

namespace Shoal.Bench;

/// <summary>
/// <c>gateway-path [rounds] [requests per round]</c>: the gateway's own code on the request path
/// (key check, <see cref="GatewayPipeline"/>'s Begin, body inspection, admission, headers, usage tap,
/// completion and the ledger's writer), called in-process on one thread with no network, for the same
/// request as <c>gateway</c>: <b>on</b> (endpoint key with limits, ledger spooled to disk) and
/// <b>off</b> (public cluster, no key). Prints the process's CPU time per request (the spool's writer
/// thread included) and allocations per request, rounds alternating. Steadier than the end-to-end
/// bench on a shared machine, and it shows what the gateway's code costs apart from the sockets.
/// BENCH_GATEWAY_PATH_PHASES=1 adds each hook's allocations and time; BENCH_GATEWAY_PATH_ALLOC=1 the
/// runtime's allocation samples by type.
/// </summary>
internal static class GatewayPathBench
{
    private const string Key = "shoal_sk_gateway_bench_key";
    private const string Body = "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],\"max_tokens\":8}";
    private const string Answer = "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi hi hi hi hi hi hi hi\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17}}";

    public static async Task RunAsync(string[] args)
    {
        var rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 6;
        var perRound = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 100_000;
        Console.WriteLine(Fmt($"## Gateway's request-path code in-process, on vs off: {rounds} rounds × {perRound} requests, {DateTime.UtcNow:yyyy-MM-dd}"));
        using var spool = new TempDirectory("shoal-gateway-path-bench");
        await using var on = Side.Create(gateway: true, spool.Path);
        await using var off = Side.Create(gateway: false, spool.Path);
        for (var i = 0; i < 20_000; i++)
        {
            await on.OneAsync();
            await off.OneAsync();
        }
        using var allocations = Environment.GetEnvironmentVariable("BENCH_GATEWAY_PATH_ALLOC") == "1" ? new AllocationListener() : null;
        var cpu = new Dictionary<string, List<double>> { ["off"] = [], ["on"] = [] };
        var allocated = new Dictionary<string, List<double>> { ["off"] = [], ["on"] = [] };
        using var self = Process.GetCurrentProcess();
        for (var round = 0; round < rounds; round++)
        {
            foreach (var side in round % 2 == 0 ? new[] { off, on } : [on, off])
            {
                await side.DrainAsync();
                self.Refresh();
                var before = self.TotalProcessorTime;
                var bytes = GC.GetTotalAllocatedBytes(precise: true);
                for (var i = 0; i < perRound; i++) await side.OneAsync();
                // The spool's writer finishes what this round handed it (its CPU time counts).
                await side.DrainAsync();
                allocated[side.Name].Add((GC.GetTotalAllocatedBytes(precise: true) - bytes) / (double)perRound);
                self.Refresh();
                cpu[side.Name].Add((self.TotalProcessorTime - before).TotalNanoseconds / perRound);
            }
        }
        if (Side.Phases)
        {
            foreach (var side in new[] { off, on })
            {
                foreach (var (hook, total) in side.PhaseTotals)
                {
                    Console.WriteLine(Fmt($"{side.Name} {hook}: {total.Bytes / (double)side.Requests:F0} B, {Stopwatch.GetElapsedTime(0, total.Ticks).TotalNanoseconds / side.Requests:F0} ns"));
                }
            }
        }
        if (allocations is not null)
        {
            // Sampled by the runtime (an event per ~100 KB), both sides' rounds together.
            foreach (var (type, bytes) in allocations.ByType.OrderByDescending(kv => kv.Value).Take(40)) Console.WriteLine(Fmt($"allocated {bytes / 1024.0 / 1024:F0} MiB of {type}"));
        }
        var offCpu = Median(cpu["off"]);
        var onCpu = Median(cpu["on"]);
        Console.WriteLine(Fmt($"| per request (median of rounds) | off | on | added |"));
        Console.WriteLine(Fmt($"| CPU time (process) | {offCpu:F0} ns | {onCpu:F0} ns | {onCpu - offCpu:F0} ns |"));
        Console.WriteLine(Fmt($"| allocated | {Median(allocated["off"]):F0} B | {Median(allocated["on"]):F0} B | {Median(allocated["on"]) - Median(allocated["off"]):F0} B |"));
        Console.WriteLine(Fmt($"rounds' added CPU: {string.Join(", ", cpu["on"].Zip(cpu["off"], (a, b) => (a - b).ToString("F0", CultureInfo.InvariantCulture)))} ns"));
        await on.ShipAsync(self);
    }

    private sealed class Side : IAsyncDisposable
    {
        private readonly ServiceProvider _services;
        private readonly EndpointAccess _access;
        private readonly GatewayPipeline _gateway;
        private readonly UsageSpool? _spool;
        private readonly ClusterRoute _route;
        private readonly byte[] _body = System.Text.Encoding.UTF8.GetBytes(Body);
        private readonly byte[] _answer = System.Text.Encoding.UTF8.GetBytes(Answer);
        private readonly string? _authorization;
        private long _handed;

        private Side(string name, ServiceProvider services, ClusterRoute route, string? authorization)
        {
            Name = name;
            _services = services;
            _route = route;
            _authorization = authorization;
            _access = services.GetRequiredService<EndpointAccess>();
            _gateway = services.GetRequiredService<GatewayPipeline>();
            _spool = services.GetService<UsageSpool>();
        }

        public string Name { get; }

        /// <summary>BENCH_GATEWAY_PATH_PHASES=1: bytes allocated and time spent in each hook, per request (the marks' own cost included).</summary>
        public static readonly bool Phases = Environment.GetEnvironmentVariable("BENCH_GATEWAY_PATH_PHASES") == "1";

        public Dictionary<string, (long Bytes, long Ticks)> PhaseTotals { get; } = [];

        public long Requests => _handed;

        private long _lastBytes;
        private long _lastTicks;

        /// <summary>The hook <paramref name="name"/> ended (its cost is what came since the last mark); null: bench code, not counted.</summary>
        private void Mark(string? name)
        {
            if (!Phases) return;
            var bytes = GC.GetAllocatedBytesForCurrentThread();
            var ticks = Stopwatch.GetTimestamp();
            if (name is not null)
            {
                PhaseTotals.TryGetValue(name, out var total);
                PhaseTotals[name] = (total.Bytes + bytes - _lastBytes, total.Ticks + ticks - _lastTicks);
            }
            _lastBytes = GC.GetAllocatedBytesForCurrentThread();
            _lastTicks = Stopwatch.GetTimestamp();
        }

        public static Side Create(bool gateway, string spoolRoot)
        {
            var route = new ClusterRoute
            {
                Cluster = "demo",
                Project = "bench",
                Public = !gateway,
                Destinations = [new RouteDestination { ReplicaId = "r1", NodeId = "n1", Address = "http://127.0.0.1:1" }],
            };
            var routes = new RouteTableHolder();
            routes.Update(new RouteTable { Version = 1, Clusters = new(StringComparer.Ordinal) { ["demo"] = route } });
            var options = new EdgeOptions { Listen = "127.0.0.1:0", Name = gateway ? "on" : "off", SpoolDirectory = gateway ? Path.Combine(spoolRoot, "on") : null };
            var services = new ServiceCollection();
            services.AddSingleton<ILoggerFactory>(NullLoggerFactory.Instance);
            services.AddSingleton(typeof(ILogger<>), typeof(NullLogger<>));
            if (gateway)
            {
                var keys = new EndpointKeyHolder();
                keys.Update(new Dictionary<string, EndpointKeyGrant>(StringComparer.Ordinal)
                {
                    [Secrets.Hash(Key)] = new EndpointKeyGrant("bench", null)
                    {
                        KeyId = "k-bench",
                        Limits = new GatewayLimits { RequestsPerMinute = 100_000_000, TokensPerMinute = 100_000_000_000, MaxConcurrent = 100_000 },
                    },
                });
                services.AddSingleton<IEndpointKeySource>(keys);
            }
            services.AddShoalEdge(options, routes);
            return new Side(gateway ? "on" : "off", services.BuildServiceProvider(), route, gateway ? "Bearer " + Key : null);
        }

        /// <summary>One request through the gateway's hooks, in EdgeProxy's order.</summary>
        public async ValueTask OneAsync()
        {
            Mark(null);
            var context = new DefaultHttpContext();
            context.Request.Method = "POST";
            context.Request.Path = "/c/demo/v1/chat/completions";
            if (_authorization is not null) context.Request.Headers.Authorization = _authorization;
            context.Response.Body = Stream.Null;
            Mark(null);
            var decision = _access.Check(_route, context.Request.Headers.Authorization, out var grant);
            Mark("access");
            if (decision is AccessDecision.Unauthenticated or AccessDecision.OtherProject) throw new InvalidOperationException(decision.ToString());
            if (decision == AccessDecision.Allowed) context.Request.Headers.Authorization = default;
            Mark(null);
            var call = _gateway.Begin(context, _route, grant, "/v1/chat/completions", Stopwatch.GetTimestamp());
            Mark("begin");
            Mark(null);
            _gateway.NeedsBody(call);
            Mark("needsbody");
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(_body.Length);
            _body.CopyTo(buffer, 0);
            BufferedBody? body = new BufferedBody(buffer, _body.Length);
            Mark(null);
            _gateway.InspectBody(call, ref body);
            Mark("inspect");
            body?.Dispose();
            Mark(null);
            if (!await _gateway.AdmitAsync(context, call)) throw new InvalidOperationException("refused");
            Mark("admit");
            call.Attempts = 1;
            call.Sent = Stopwatch.GetTimestamp();
            call.ReplicaId = "r1";
            call.NodeId = "n1";
            using var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(_answer) };
            response.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            context.Response.StatusCode = 200;
            Mark(null);
            _gateway.OnResponse(context, call, response);
            Mark("onresponse");
            call.FirstByte = Stopwatch.GetTimestamp();
            Mark(null);
            await context.Response.Body.WriteAsync(_answer);
            Mark("write");
            Mark(null);
            await _gateway.OnResponseEndAsync(call, CancellationToken.None);
            Mark("end");
            Mark(null);
            _gateway.Complete(context, call);
            Mark("complete");
            Mark(null);
            if (call.Tap is { } tap) await tap.DisposeAsync();
            Mark("dispose");
            _handed++;
        }

        /// <summary>
        /// The ledger's other half, off the request path: what shipping the rows the rounds spooled costs
        /// the edge per row, as a standalone edge does it (take a batch from the spool, make the
        /// <see cref="UsageBatch"/> message it sends, acknowledge), the WebSocket's send left out.
        /// </summary>
        public async Task ShipAsync(Process self)
        {
            if (_spool is null) return;
            await DrainAsync();
            // Warm-up: the shipping code JIT-compiled (tiered) before it is measured.
            for (var warm = 0; warm < 50 && _spool.TakeBatch() is { } first; warm++) _spool.Acknowledge(first.Sequence);
            self.Refresh();
            var before = self.TotalProcessorTime;
            var bytes = GC.GetTotalAllocatedBytes(precise: true);
            long rows = 0;
            long sent = 0;
            var clock = Stopwatch.StartNew();
            while (rows < 200_000 && clock.Elapsed < TimeSpan.FromSeconds(60) && _spool.TakeBatch() is { } batch)
            {
                sent += batch.Message.Length;
                _spool.Acknowledge(batch.Sequence);
                rows += batch.Count;
            }
            self.Refresh();
            if (rows == 0) return;
            Console.WriteLine(Fmt($"shipping the ledger (off the request path): {rows:N0} rows in batches, {(self.TotalProcessorTime - before).TotalNanoseconds / rows:F0} ns CPU and {(GC.GetTotalAllocatedBytes(precise: true) - bytes) / (double)rows:F0} B allocated per row, {sent / (double)rows:F0} B sent per row"));
        }

        /// <summary>Waits until the spool's writer has written what was handed to it.</summary>
        public async Task DrainAsync()
        {
            if (_spool is null) return;
            var deadline = Stopwatch.StartNew();
            while (_spool.Written + _spool.Dropped + _spool.Failed < _handed && deadline.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(1);
        }

        public async ValueTask DisposeAsync() => await _services.DisposeAsync();
    }

    /// <summary>BENCH_GATEWAY_PATH_ALLOC=1: the runtime's allocation samples by type, for finding what the path allocates.</summary>
    private sealed class AllocationListener : System.Diagnostics.Tracing.EventListener
    {
        public System.Collections.Concurrent.ConcurrentDictionary<string, long> ByType { get; } = new();

        protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
        {
            if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1);
        }

        protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
        {
            if (e.EventName != "GCAllocationTick_V4" || e.Payload is null) return;
            var i = e.PayloadNames!.IndexOf("TypeName");
            var amount = e.PayloadNames.IndexOf("AllocationAmount64");
            if (i >= 0) ByType.AddOrUpdate((string)e.Payload[i]!, _ => Convert.ToInt64(e.Payload[amount], CultureInfo.InvariantCulture), (_, v) => v + Convert.ToInt64(e.Payload[amount], CultureInfo.InvariantCulture));
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[(sorted.Length - 1) / 2];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
