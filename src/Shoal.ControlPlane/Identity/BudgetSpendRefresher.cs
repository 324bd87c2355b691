using Shoal.Core.Gateway;
using Shoal.Store;

namespace Shoal.ControlPlane.Identity;

/// <summary>
/// Every <see cref="Interval"/>, sums what each key and project with a budget spent in its budget's current
/// period from the usage ledger (<c>usage_records</c>) and hands it to <see cref="ApiKeyDirectory"/>, which
/// pushes it to edges with the grants (<c>SpentUsd</c>). An edge counts a budget from the larger of its own
/// count and this figure, so an edge started again, or one without Redis, does not start a period at zero.
/// What edges spent but have not shipped yet is not in it: edges ship within seconds.
/// </summary>
public sealed partial class BudgetSpendRefresher(ApiKeyDirectory keys, IShoalStore store, TimeProvider time, ILogger<BudgetSpendRefresher> logger) : BackgroundService
{
    /// <summary>How often the spending figures are summed again.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(15);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            try
            {
                await RefreshAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogFailed(logger, e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Sums each budget's period from the ledger now (one query per grouping and period kind in use).</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        var (budgetKeys, budgetProjects) = keys.Budgets();
        var now = time.GetUtcNow();
        var keySpent = await SumAsync(budgetKeys, Contracts.UsageGroupings.Key, now, ct);
        var projectSpent = await SumAsync(budgetProjects, Contracts.UsageGroupings.Project, now, ct);
        await keys.SetSpentAsync(keySpent, projectSpent, ct);
    }

    private async Task<Dictionary<string, decimal>> SumAsync(IReadOnlyList<(string Scope, string Period)> scopes, string by, DateTimeOffset now, CancellationToken ct)
    {
        var spent = new Dictionary<string, decimal>(StringComparer.Ordinal);
        foreach (var group in scopes.GroupBy(s => BudgetWindow.Of(s.Period, now)))
        {
            var rows = await store.QueryUsageAsync(new UsageQuery { By = by, Since = group.Key.Start, Until = group.Key.End }, ct);
            var wanted = group.Select(s => s.Scope).ToHashSet(StringComparer.Ordinal);
            foreach (var row in rows)
            {
                if (wanted.Contains(row.Group) && row.CostUsd > 0) spent[row.Group] = row.CostUsd;
            }
        }
        return spent;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not sum budget spending from the usage ledger; edges keep the last figures")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
