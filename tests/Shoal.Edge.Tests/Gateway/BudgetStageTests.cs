using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Gateway;
using Shoal.Edge.Gateway;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>
/// The budget stage's rules, run twice: on this edge's own counters and on a real redis-server's
/// (the Lua scripts). Fake time drives the periods; its day is today's, so Redis' expiries lie ahead.
/// </summary>
public abstract class BudgetStageContract : IAsyncLifetime
{
    // A request of 1,000 prompt and 1,000 completion tokens at $1/$2 per 1M may cost $0.003.
    private const long Prompt = 1000;
    private const long MaxTokens = 1000;
    private const decimal Most = 0.003m;

    private GatewayRedis? _redis;

    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));

    protected ProjectGrantHolder Projects { get; } = new();

    protected abstract string? RedisConfiguration { get; }

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
    }

    protected BudgetStage Stage()
    {
        _redis ??= new GatewayRedis(new EdgeOptions { Redis = RedisConfiguration }, NullLogger<GatewayRedis>.Instance);
        return new BudgetStage(Projects, new BudgetOptions(), _redis, Time, NullLogger<BudgetStage>.Instance);
    }

    /// <summary>A key of its own per test run, so runs against one Redis do not share counters.</summary>
    protected static string NewKeyId() => "k" + Guid.NewGuid().ToString("N")[..10];

    protected static GatewayCall Call(EndpointKeyGrant grant, ClusterPrice? price = null) =>
        GatewayCalls.Make(GatewayCalls.Route(price ?? GatewayCalls.TokenPrice, grant.Project), grant, Prompt, MaxTokens);

    private static BudgetSpec Budget(decimal usd, string period = BudgetPeriods.Month) => new() { AmountUsd = usd, Period = period };

    [Fact]
    public void Calls_without_a_budget_are_skipped()
    {
        var stage = Stage();
        Assert.True(stage.Skips(Call(GatewayCalls.Key(NewKeyId()))));
        Assert.False(stage.Skips(Call(GatewayCalls.Key(NewKeyId(), budget: Budget(1)))));
        Assert.True(stage.NeedsBody(Call(GatewayCalls.Key(NewKeyId()))));
        Assert.False(stage.NeedsBody(Call(GatewayCalls.Key(NewKeyId()), new ClusterPrice { PerGpuSecond = 1 })));
    }

    [Fact]
    public async Task Reservations_hold_the_most_cost_until_the_call_settles_at_its_actual_cost()
    {
        var stage = Stage();
        var grant = GatewayCalls.Key(NewKeyId(), budget: Budget(0.01m));
        var held = new List<GatewayCall>();
        for (var i = 0; i < 3; i++)
        {
            var call = Call(grant);
            Assert.True((await stage.AdmitAsync(call, default)).Admitted);
            Assert.Equal(Most, call.ReservedCostUsd);
            held.Add(call);
        }
        // $0.009 reserved: a fourth $0.003 does not fit beside them.
        var refused = await stage.AdmitAsync(Call(grant), default);
        Assert.False(refused.Admitted);
        Assert.Equal(429, refused.Status);
        Assert.Equal("insufficient_quota", refused.Type);
        Assert.Equal("insufficient_quota", refused.Code);
        Assert.Contains("has spent $0 of its $0.01 budget for the month", refused.Message, StringComparison.Ordinal);
        Assert.Contains("$0.009 is reserved by requests in flight", refused.Message, StringComparison.Ordinal);
        Assert.Contains("may cost up to $0.003", refused.Message, StringComparison.Ordinal);
        Assert.Equal(TimeSpan.FromSeconds(1), refused.RetryAfter);

        // One ends having cost $0.0007 (500 prompt, 100 completion tokens): its reservation goes, its cost stays.
        GatewayCalls.Used(held[0], 500, 100);
        stage.Complete(held[0]);
        var next = Call(grant);
        var admitted = await Eventually.GetAsync(async () => await stage.AdmitAsync(next, default), r => r.Admitted, what: "room after a settle");
        Assert.True(admitted.Admitted);
        // Spent $0.0007 + reserved $0.009 = $0.0097: the next does not fit, and the message says so.
        refused = await stage.AdmitAsync(Call(grant), default);
        Assert.Contains("has spent $0.0007 of its $0.01 budget", refused.Message, StringComparison.Ordinal);
        Assert.Contains("$0.009 is reserved", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_used_up_budget_refuses_everything_until_its_period_rolls_over()
    {
        var stage = Stage();
        var grant = GatewayCalls.Key(NewKeyId(), budget: Budget(0.005m, BudgetPeriods.Day));
        var call = Call(grant);
        Assert.True((await stage.AdmitAsync(call, default)).Admitted);
        // It cost more than reserved (a long answer without max_tokens): charged in full.
        GatewayCalls.Used(call, 1000, 2000);
        stage.Complete(call);
        var free = Call(grant, new ClusterPrice());
        var refused = await Eventually.GetAsync(async () => await stage.AdmitAsync(free, default), r => !r.Admitted, what: "the settle");
        Assert.Contains("has spent $0.005 of its $0.005 budget for the day", refused.Message, StringComparison.Ordinal);
        var midnight = new DateTimeOffset(Time.GetUtcNow().UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
        Assert.Contains("it resets at " + midnight.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), refused.Message, StringComparison.Ordinal);
        Assert.Equal(TimeSpan.FromHours(12), refused.RetryAfter);

        Time.Advance(TimeSpan.FromHours(12) - TimeSpan.FromSeconds(1));
        Assert.False((await stage.AdmitAsync(Call(grant), default)).Admitted);
        Time.Advance(TimeSpan.FromSeconds(1));
        var fresh = Call(grant);
        Assert.True((await stage.AdmitAsync(fresh, default)).Admitted);
        // A call admitted before midnight that ends after it settles in its own period.
        GatewayCalls.Used(fresh, 1000, 1000);
        stage.Complete(fresh);
        await Eventually.UntilAsync(() => stage.AdmitAsync(Call(grant), default).AsTask().Result is { Admitted: false, Message: var m } && m!.Contains("spent $0.003", StringComparison.Ordinal),
            what: "the new day's spending");
    }

    [Fact]
    public async Task Key_and_project_budgets_both_apply()
    {
        var stage = Stage();
        var project = "p" + Guid.NewGuid().ToString("N")[..8];
        Projects.Update(new Dictionary<string, ProjectGrant>(StringComparer.Ordinal) { [project] = new() { Budget = Budget(0.005m) } });
        var rich = GatewayCalls.Key(NewKeyId(), project, Budget(1m));
        var plain = GatewayCalls.Key(NewKeyId(), project);
        var poor = GatewayCalls.Key(NewKeyId(), project, Budget(0.002m));

        Assert.False(stage.Skips(Call(plain)));
        Assert.True((await stage.AdmitAsync(Call(rich), default)).Admitted);
        // The project has $0.002 left beside the $0.003 reserved: no key of it gets a $0.003 request through.
        var byProject = await stage.AdmitAsync(Call(plain), default);
        Assert.False(byProject.Admitted);
        Assert.Contains($"project '{project}' has spent", byProject.Message, StringComparison.Ordinal);
        Assert.False((await stage.AdmitAsync(Call(rich), default)).Admitted);
        // The key's own budget is the first to refuse.
        var byKey = await stage.AdmitAsync(Call(poor), default);
        Assert.Contains($"key {poor.KeyId} has spent $0 of its $0.002 budget", byKey.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_pushed_spending_is_a_floor_in_the_period_it_was_pushed_in()
    {
        var stage = Stage();
        // The control plane's ledger says $0.009 of $0.01 is spent already (other edges, before a restart).
        var grant = GatewayCalls.Key(NewKeyId(), budget: Budget(0.01m, BudgetPeriods.Day), spent: 0.009m);
        var refused = await stage.AdmitAsync(Call(grant), default);
        Assert.Contains("has spent $0.009 of its $0.01 budget", refused.Message, StringComparison.Ordinal);
        var small = GatewayCalls.Make(GatewayCalls.Route(GatewayCalls.TokenPrice), grant, 100, 100);
        Assert.True((await stage.AdmitAsync(small, default)).Admitted);

        // Next day, the same figure is yesterday's: it no longer counts.
        Time.Advance(TimeSpan.FromDays(1));
        Assert.True((await stage.AdmitAsync(Call(grant), default)).Admitted);
        // A new figure pushed today does.
        var pushed = grant with { SpentUsd = 0.0095m };
        Assert.Contains("has spent $0.0095", (await stage.AdmitAsync(Call(pushed), default)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrent_admissions_reserve_no_more_than_the_budget_holds()
    {
        var stage = Stage();
        var grant = GatewayCalls.Key(NewKeyId(), budget: Budget(0.02m));
        // 200 at once, $0.003 each: exactly 6 fit in $0.02.
        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(async () => await stage.AdmitAsync(Call(grant), default))));
        Assert.Equal(6, results.Count(r => r.Admitted));
        Assert.All(results.Where(r => !r.Admitted), r => Assert.Equal(429, r.Status));
    }

    [Fact]
    public async Task A_budget_of_zero_refuses_even_free_requests()
    {
        var stage = Stage();
        var grant = GatewayCalls.Key(NewKeyId(), budget: Budget(0m));
        var result = await stage.AdmitAsync(Call(grant, new ClusterPrice()), default);
        Assert.False(result.Admitted);
        Assert.Equal(429, result.Status);
    }
}

public sealed class LocalBudgetStageTests : BudgetStageContract
{
    protected override string? RedisConfiguration => null;
}

public sealed class RedisBudgetStageTests : BudgetStageContract
{
    private RedisServer? _server;

    protected override string? RedisConfiguration => _server!.Configuration;

    public override async Task InitializeAsync() => _server = await RedisServer.StartAsync();

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_server is not null) await _server.DisposeAsync();
    }

    [Fact]
    public async Task Edges_sharing_a_redis_share_one_budget()
    {
        var a = Stage();
        var b = new BudgetStage(Projects, new BudgetOptions(), new GatewayRedis(new EdgeOptions { Redis = RedisConfiguration }, NullLogger<GatewayRedis>.Instance), Time, NullLogger<BudgetStage>.Instance);
        var grant = GatewayCalls.Key(NewKeyId(), budget: new BudgetSpec { AmountUsd = 0.006m });
        Assert.True((await a.AdmitAsync(Call(grant), default)).Admitted);
        Assert.True((await b.AdmitAsync(Call(grant), default)).Admitted);
        var refused = await a.AdmitAsync(Call(grant), default);
        Assert.Contains("$0.006 is reserved", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Redis_unreachable_refuses_with_503_and_recovers_when_it_is_back()
    {
        var stage = Stage();
        var grant = GatewayCalls.Key(NewKeyId(), budget: new BudgetSpec { AmountUsd = 1m });
        var before = Call(grant);
        Assert.True((await stage.AdmitAsync(before, default)).Admitted);

        await _server!.KillAsync();
        var refused = await stage.AdmitAsync(Call(grant), default);
        Assert.False(refused.Admitted);
        Assert.Equal(503, refused.Status);
        Assert.Equal("budget_unavailable", refused.Code);
        Assert.Contains("budgets fail closed", refused.Message, StringComparison.Ordinal);
        // A call that ends during the outage keeps its settle for later.
        GatewayCalls.Used(before, 1000, 1000);
        stage.Complete(before);

        await _server.RestartAsync();
        // A fresh server has lost the counters (no persistence); the kept settle is sent again.
        await Eventually.UntilAsync(() => stage.AdmitAsync(Call(grant), default).AsTask().Result.Admitted, TimeSpan.FromSeconds(20), "Redis back");
        var counters = (RedisBudgetCounters)stage.Counters;
        await Eventually.UntilAsync(() => counters.PendingSettles == 0, TimeSpan.FromSeconds(10), "the kept settle");
    }

    [Fact]
    public async Task A_reservation_whose_answer_the_client_did_not_wait_for_is_released()
    {
        var stage = Stage();
        // Room for two reservations of $0.003.
        var grant = GatewayCalls.Key(NewKeyId(), budget: new BudgetSpec { AmountUsd = 0.006m });
        using var left = new CancellationTokenSource();
        await left.CancelAsync();
        // The script goes out, then the wait ends at once (the client left): Redis reserves all the same.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stage.AdmitAsync(Call(grant), left.Token).AsTask());
        // Released by its id, sent after it on the same connection: the next two both fit.
        Assert.True((await stage.AdmitAsync(Call(grant), default)).Admitted);
        Assert.True((await stage.AdmitAsync(Call(grant), default)).Admitted);
    }

    [Fact]
    public async Task A_settle_sent_twice_counts_once_releasing_what_was_never_reserved_changes_nothing_and_a_free_request_settles()
    {
        var counters = (RedisBudgetCounters)Stage().Counters;
        var scope = new BudgetScope("key:" + NewKeyId(), BudgetWindow.Of(BudgetPeriods.Month, Time.GetUtcNow()), LimitNanos: 10_000, FloorNanos: 0);
        Assert.True((await counters.TryReserveAsync([scope], "r1", 6_000, default)).Admitted);
        counters.Settle([scope], "r2", 0, 0);
        counters.Settle([scope], "r1", 6_000, 1_000);
        // Sent again (its answer was lost): counted once.
        counters.Settle([scope], "r1", 6_000, 1_000);
        // Settles go out in order on one connection: spent 1,000, nothing reserved, so 9,001 does not fit and 9,000 does.
        var check = await counters.TryReserveAsync([scope], "r3", 9_001, default);
        Assert.Equal((false, 1_000L, 0L), (check.Admitted, check.SpentNanos, check.ReservedNanos));
        // A request that reserved nothing (no price for tokens) settles all the same, with what it cost.
        Assert.True((await counters.TryReserveAsync([scope], "free", 0, default)).Admitted);
        counters.Settle([scope], "free", 0, 500);
        Assert.True((await counters.TryReserveAsync([scope], "r4", 8_500, default)).Admitted);
        var db = new GatewayRedis(new EdgeOptions { Redis = RedisConfiguration }, NullLogger<GatewayRedis>.Instance);
        await using (db)
        {
            await Eventually.UntilAsync(() => db.IsConnected, TimeSpan.FromSeconds(10), "a second connection");
            var fields = (await db.Database!.HashGetAllAsync(RedisBudgetCounters.KeyPrefix + scope.CounterKey)).ToDictionary(e => e.Name.ToString(), e => e.Value.ToString());
            Assert.Equal(new Dictionary<string, string> { ["s"] = "1500", ["r"] = "8500", ["q:r4"] = "8500" }, fields);
        }
    }

    [Fact]
    public async Task No_redis_listening_at_all_refuses_with_503()
    {
        await using var redis = new GatewayRedis(new EdgeOptions { Redis = $"127.0.0.1:{FreePort.Next()}" }, NullLogger<GatewayRedis>.Instance);
        var stage = new BudgetStage(Projects, new BudgetOptions(), redis, Time, NullLogger<BudgetStage>.Instance);
        var result = await stage.AdmitAsync(Call(GatewayCalls.Key(NewKeyId(), budget: new BudgetSpec { AmountUsd = 1m })), default);
        Assert.Equal(503, result.Status);
    }
}
