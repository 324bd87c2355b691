using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Core.Gateway;

/// <summary>
/// One period of a budget: a UTC day (from 00:00), week (from Monday 00:00) or month (from the 1st
/// 00:00). Spending counts against the period a request was admitted in; the next period starts at zero.
/// </summary>
public readonly record struct BudgetWindow(string Period, DateTimeOffset Start, DateTimeOffset End)
{
    /// <summary>Short, stable name of the period for counter keys: <c>d2026-12-05</c>, <c>w2026-11-30</c>, <c>m2026-12-01</c>.</summary>
    public string Id => Period[0] + Start.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    /// <summary>The period of kind <paramref name="period"/> (an unknown one counts as a month) that holds <paramref name="now"/>.</summary>
    public static BudgetWindow Of(string? period, DateTimeOffset now)
    {
        var day = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        switch (period)
        {
            case BudgetPeriods.Day:
                return new BudgetWindow(BudgetPeriods.Day, day, day.AddDays(1));
            case BudgetPeriods.Week:
                var monday = day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
                return new BudgetWindow(BudgetPeriods.Week, monday, monday.AddDays(7));
            default:
                var first = new DateTimeOffset(day.Year, day.Month, 1, 0, 0, 0, TimeSpan.Zero);
                return new BudgetWindow(BudgetPeriods.Month, first, first.AddMonths(1));
        }
    }
}
