using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Contracts;
using Shoal.Core.Access;
using Shoal.Core.Security;
using Shoal.Edge.Access;
using Shoal.Edge.Gateway;
using Shoal.Edge.Routing;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>Issue 16, must-show 2: concurrent clients against a small budget, through a real edge to a real replica.</summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class BudgetEndToEndTests
{
    private const string Key = "shoal_sk_budget_e2e";
    private const decimal BudgetUsd = 0.01m;
    // 100 ms on a one-GPU replica at $0.002 per GPU-second: about $0.0002 a request, so some 50 requests
    // use the budget up; each reserves 1 s of GPU time ($0.002) before it goes out, so at most 5 fit at once.
    private const decimal PricePerGpuSecond = 0.002m;
    private static readonly TimeSpan s_replicaTime = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_reserved = TimeSpan.FromSeconds(1);
    private const int Clients = 50;

    /// <param name="twoEdgesOneRedis">The clients split over two edges that count in one real redis-server (else one edge, counting itself).</param>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Fifty_clients_spend_no_more_than_the_budget_and_then_every_request_is_refused(bool twoEdgesOneRedis)
    {
        await using var redis = twoEdgesOneRedis ? await RedisServer.StartAsync() : null;
        int atReplica = 0, mostAtReplica = 0;
        await using var replica = await TestReplica.StartAsync("r1", async ctx =>
        {
            var now = Interlocked.Increment(ref atReplica);
            InterlockedMax(ref mostAtReplica, now);
            await Task.Delay(s_replicaTime, ctx.RequestAborted);
            Interlocked.Decrement(ref atReplica);
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync("""{"object":"chat.completion","choices":[]}""", ctx.RequestAborted);
        });
        var keys = new EndpointKeyHolder();
        keys.Update(new Dictionary<string, EndpointKeyGrant>(StringComparer.Ordinal)
        {
            [Secrets.Hash(Key)] = new("alpha", null) { KeyId = "k1", Budget = new BudgetSpec { AmountUsd = BudgetUsd, Period = BudgetPeriods.Month } },
        });
        var ledger = new CollectingLedger();
        var edges = new List<TestEdge>();
        var clients = new List<HttpClient>();
        try
        {
            for (var e = 0; e < (twoEdgesOneRedis ? 2 : 1); e++)
            {
                var edge = await TestEdge.StartAsync(new EdgeOptions { Redis = redis?.Configuration }, services: s =>
                {
                    s.AddSingleton<IEndpointKeySource>(keys);
                    s.AddSingleton<IUsageLedger>(ledger);
                    s.AddSingleton(new BudgetOptions { ReservedDuration = s_reserved });
                });
                edges.Add(edge);
                edge.Routes.Update(new RouteTable
                {
                    Version = 1,
                    Clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal)
                    {
                        ["chat"] = TestEdge.Route("chat", [replica.Route]) with
                        {
                            Public = false,
                            Project = "alpha",
                            GpuCount = 1,
                            Price = new ClusterPrice { PerGpuSecond = PricePerGpuSecond },
                        },
                    },
                });
                var client = edge.Client();
                client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
                clients.Add(client);
            }
            await RunAsync(clients, edges, () => Volatile.Read(ref mostAtReplica), () => replica.Hits, ledger);
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
            foreach (var edge in edges) await edge.DisposeAsync();
        }
    }

    private static async Task RunAsync(List<HttpClient> clients, List<TestEdge> edges, Func<int> mostAtReplica, Func<int> replicaHits, CollectingLedger ledger)
    {
        var refusals = new ConcurrentBag<string>();
        var unexpected = new ConcurrentBag<string>();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var sent = 0;
        // The edge writes a request's ledger row (and counts its series) just after its response: wait for all of them.
        Task AllRowsAsync() => Eventually.UntilAsync(() => ledger.Rows.Count == Volatile.Read(ref sent), what: "a ledger row per request");

        async Task<(HttpStatusCode Status, string Body, TimeSpan? RetryAfter)> SendAsync(HttpClient client)
        {
            Interlocked.Increment(ref sent);
            using var content = new StringContent("""{"model":"m","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");
            using var response = await client.PostAsync("/c/chat/v1/chat/completions", content, deadline.Token);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(deadline.Token), response.Headers.RetryAfter?.Delta);
        }

        // Each client sends until it is told the budget is used up (a refusal that says to wait for the next period).
        async Task ClientAsync(HttpClient client)
        {
            for (var tries = 0; tries < 400; tries++)
            {
                var (status, body, retryAfter) = await SendAsync(client);
                if (status == HttpStatusCode.OK) continue;
                if (status != HttpStatusCode.TooManyRequests)
                {
                    unexpected.Add($"{(int)status} {body}");
                    return;
                }
                refusals.Add(body);
                if (retryAfter > TimeSpan.FromSeconds(1)) return;
                await Task.Delay(100, deadline.Token);
            }
            unexpected.Add("a client never saw the budget used up");
        }
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(i => Task.Run(() => ClientAsync(clients[i % clients.Count]))));
        Assert.Empty(unexpected);
        await AllRowsAsync();

        // Spend is what the admitted requests cost, as the ledger has it.
        var rows = ledger.Rows.ToArray();
        var admitted = rows.Where(r => r.Status == 200).ToArray();
        var spent = admitted.Sum(r => r.CostUsd);
        var reservation = PricePerGpuSecond * (decimal)s_reserved.TotalSeconds;
        var mostInFlight = MostAtOnce(admitted);
        // The first five fit at once whatever the timing.
        Assert.True(admitted.Length >= (int)(BudgetUsd / reservation), $"only {admitted.Length} requests were admitted");
        Assert.All(admitted, r => Assert.True(r.CostUsd > 0, "an admitted request cost nothing"));
        // The bound: spend exceeds the budget by at most what was reserved in flight...
        Assert.True(spent <= BudgetUsd + mostInFlight * reservation, $"spent ${spent} of ${BudgetUsd} with at most {mostInFlight} requests in flight");
        // ...and, exactly, by no more than requests cost beyond their reservations (none, unless one
        // ran past its reserved second on a loaded machine: then that one's excess).
        var beyond = admitted.Sum(r => Math.Max(0, r.CostUsd - reservation));
        Assert.True(spent <= BudgetUsd + beyond, $"spent ${spent} of a ${BudgetUsd} budget; requests ran ${beyond} past their reservations");
        // Yet the budget was used up: less than one reservation left, or no client would have been told to wait for the next period.
        Assert.True(spent > BudgetUsd - reservation, $"spent only ${spent} of ${BudgetUsd}");
        // A request is at the replica only while its reservation is held: no more at once than reservations fit.
        Assert.InRange(mostAtReplica(), 1, (int)(BudgetUsd / reservation));

        // Now every request is refused, with OpenAI's error and a clear reason.
        for (var i = 0; i < 10; i++)
        {
            var (status, body, retryAfter) = await SendAsync(clients[i % clients.Count]);
            Assert.Equal(HttpStatusCode.TooManyRequests, status);
            Assert.True(retryAfter > TimeSpan.FromSeconds(1), $"Retry-After {retryAfter} should point at the next period");
            using var json = JsonDocument.Parse(body);
            var error = json.RootElement.GetProperty("error");
            Assert.Equal("insufficient_quota", error.GetProperty("type").GetString());
            Assert.Equal("insufficient_quota", error.GetProperty("code").GetString());
            var message = error.GetProperty("message").GetString()!;
            Assert.Contains("budget exceeded: key k1 has spent $", message, StringComparison.Ordinal);
            Assert.Contains("of its $0.01 budget for the month", message, StringComparison.Ordinal);
            Assert.Contains("resets at", message, StringComparison.Ordinal);
        }
        Assert.Equal(admitted.Length, replicaHits());

        // The series, added up over the edges.
        await AllRowsAsync();
        var pages = await Task.WhenAll(edges.Select(e => e.MetricsAsync()));
        double Sum(string series) => pages.Sum(page => page.Split('\n').Where(l => l.StartsWith(series + " ", StringComparison.Ordinal))
            .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture)).Single());
        Assert.Equal(rows.Length + 10, Sum("shoal_gateway_requests_total{project=\"alpha\",key=\"k1\"}"));
        Assert.Equal(refusals.Count + 10, Sum("shoal_gateway_budget_refused_total{project=\"alpha\",key=\"k1\",reason=\"exceeded\"}"));
        Assert.Equal(0, Sum("shoal_gateway_budget_refused_total{project=\"alpha\",key=\"k1\",reason=\"unavailable\"}"));
        Assert.Equal(0, Sum("shoal_gateway_limited_total{project=\"alpha\",key=\"k1\"}"));
        Assert.Equal(ledger.Rows.Sum(r => r.PromptTokens), Sum("shoal_gateway_tokens_total{project=\"alpha\",key=\"k1\",kind=\"prompt\"}"));
        Assert.Equal((double)spent, Sum("shoal_gateway_cost_usd_total{project=\"alpha\",key=\"k1\"}"), 1e-6);
    }

    private static void InterlockedMax(ref int location, int value)
    {
        var current = Volatile.Read(ref location);
        while (value > current && Interlocked.CompareExchange(ref location, value, current) is var seen && seen != current) current = seen;
    }

    /// <summary>The most requests in flight at one time, from their arrival and duration.</summary>
    private static int MostAtOnce(UsageRecord[] rows)
    {
        var edges = rows.SelectMany(r => new[] { (At: r.At, Delta: 1), (At: r.At.AddMilliseconds(r.DurationMs), Delta: -1) })
            .OrderBy(e => e.At).ThenBy(e => e.Delta).ToArray();
        int now = 0, most = 0;
        foreach (var e in edges) most = Math.Max(most, now += e.Delta);
        return most;
    }

    private sealed class CollectingLedger : IUsageLedger
    {
        public ConcurrentQueue<UsageRecord> Rows { get; } = new();

        public void Record(UsageRecord record) => Rows.Enqueue(record);
    }
}
