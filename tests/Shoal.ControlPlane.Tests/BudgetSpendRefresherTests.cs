using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.Store;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

public sealed class BudgetSpendRefresherTests
{
    [Fact]
    public async Task Grants_carry_what_each_key_and_project_spent_in_their_budgets_current_period_and_edges_hear_of_changes()
    {
        using var dir = new TempDirectory("shoal-spend");
        await using var store = SqliteShoalStore.InDirectory(dir.Path, Shoal.Core.Security.SecretBox.FromKeyText(Shoal.Core.Security.SecretBox.NewKeyText()));
        await store.MigrateAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
        var keys = new ApiKeyDirectory(store, time, NullLogger<ApiKeyDirectory>.Instance);
        await keys.LoadAsync(dir.Path, default);
        await keys.CreateProjectAsync("team", null, null, new BudgetSpec { AmountUsd = 10m, Period = BudgetPeriods.Month }, null, default);
        var (daily, dailyKey) = await keys.CreateAsync("daily", ApiKeyRoles.Endpoint, "team", null, null, null, new BudgetSpec { AmountUsd = 1m, Period = BudgetPeriods.Day }, null, default);
        var (open, openKey) = await keys.CreateAsync("open", ApiKeyRoles.Endpoint, "team", null, null, null, null, null, default);
        UsageRecord Row(string id, string key, DateTimeOffset at, decimal cost) =>
            new() { RequestId = id, At = at, KeyId = key, Project = "team", Cluster = "llama", Status = 200, CostUsd = cost };
        var now = time.GetUtcNow();
        await store.AppendUsageAsync([
            Row("r1", daily.Id, now.AddHours(-1), 0.25m),
            Row("r2", daily.Id, now.AddDays(-1), 0.50m),      // yesterday: out of the key's day, in the project's month
            Row("r3", open.Id, now.AddMinutes(-5), 0.125m),
            Row("r4", open.Id, now.AddMonths(-1), 3m),         // last month: out of everything
        ]);
        var keyEvents = 0;
        var projectEvents = 0;
        keys.EndpointKeysChanged += () => keyEvents++;
        keys.ProjectGrantsChanged += () => projectEvents++;
        var refresher = new BudgetSpendRefresher(keys, store, time, NullLogger<BudgetSpendRefresher>.Instance);

        await refresher.RefreshAsync(default);

        var grants = keys.EndpointKeys;
        Assert.Equal(0.25m, grants[Shoal.Core.Security.Secrets.Hash(dailyKey)].SpentUsd);
        Assert.Null(grants[Shoal.Core.Security.Secrets.Hash(openKey)].SpentUsd); // no budget: nothing to count against
        Assert.Equal(0.875m, keys.Projects["team"].SpentUsd);
        Assert.Equal((1, 1), (keyEvents, projectEvents));

        // Nothing new: nothing resent. A new day: the key's day starts again at zero.
        await refresher.RefreshAsync(default);
        Assert.Equal((1, 1), (keyEvents, projectEvents));
        time.Advance(TimeSpan.FromHours(12));
        await refresher.RefreshAsync(default);
        Assert.Null(keys.EndpointKeys[Shoal.Core.Security.Secrets.Hash(dailyKey)].SpentUsd);
        Assert.Equal(0.875m, keys.Projects["team"].SpentUsd);
        Assert.Equal((2, 1), (keyEvents, projectEvents));
    }
}
