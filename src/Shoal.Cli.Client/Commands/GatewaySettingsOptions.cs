using System.CommandLine;
using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>
/// The gateway's settings of an endpoint key or a project (issue 16): <c>--rpm --tpm --max-concurrent
/// --budget --budget-period</c>, and on updates <c>--no-budget</c> (0 removes a limit). Each command
/// makes its own instance (an option belongs to one command).
/// </summary>
public sealed class GatewaySettingsOptions
{
    private readonly Option<long?> _rpm;
    private readonly Option<long?> _tpm;
    private readonly Option<long?> _maxConcurrent;
    private readonly Option<decimal?> _budget;
    private readonly Option<string?> _budgetPeriod;
    private readonly Option<bool>? _noBudget;

    public GatewaySettingsOptions(Command command, bool update)
    {
        var min = update ? 0 : 1;
        var zero = update ? "; 0 removes the limit" : "";
        _rpm = Whole("--rpm", $"Gateway limit: requests per minute{zero}", min, int.MaxValue);
        _tpm = Whole("--tpm", $"Gateway limit: tokens (prompt + completion) per minute{zero}", min, long.MaxValue);
        _maxConcurrent = Whole("--max-concurrent", $"Gateway limit: requests in flight at once{zero}", min, int.MaxValue);
        _budget = new Option<decimal?>("--budget")
        {
            Description = "Budget in US dollars per period (budgets fail closed)",
            HelpName = "USD",
            CustomParser = static result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
                if (decimal.TryParse(text.TrimStart('$'), NumberStyles.Number, CultureInfo.InvariantCulture, out var value) && value > 0) return value;
                result.AddError($"--budget must be an amount in US dollars above 0, got '{text}'");
                return null;
            },
        };
        _budgetPeriod = new Option<string?>("--budget-period") { Description = "The budget's period: day | week | month (default month)", HelpName = "day|week|month" };
        _budgetPeriod.AcceptOnlyFromAmong(BudgetPeriods.Day, BudgetPeriods.Week, BudgetPeriods.Month);
        command.Options.Add(_rpm);
        command.Options.Add(_tpm);
        command.Options.Add(_maxConcurrent);
        command.Options.Add(_budget);
        command.Options.Add(_budgetPeriod);
        if (update)
        {
            _noBudget = new Option<bool>("--no-budget") { Description = "Remove the budget" };
            command.Options.Add(_noBudget);
        }
    }

    /// <summary>The limits given on the command line; null when none was.</summary>
    public GatewayLimits? Limits(ParseResult result)
    {
        var rpm = result.GetValue(_rpm);
        var tpm = result.GetValue(_tpm);
        var conc = result.GetValue(_maxConcurrent);
        if (rpm is null && tpm is null && conc is null) return null;
        return new GatewayLimits { RequestsPerMinute = (int?)rpm, TokensPerMinute = tpm, MaxConcurrent = (int?)conc };
    }

    /// <summary>The budget given; null when none was. <paramref name="error"/>: a period without an amount.</summary>
    public BudgetSpec? Budget(ParseResult result, out string? error)
    {
        error = null;
        var amount = result.GetValue(_budget);
        var period = result.GetValue(_budgetPeriod);
        if (amount is null)
        {
            if (period is not null) error = "--budget-period needs --budget (the amount in US dollars)";
            return null;
        }
        return new BudgetSpec { AmountUsd = amount.Value, Period = period ?? BudgetPeriods.Month };
    }

    public bool RemoveBudget(ParseResult result) => _noBudget is not null && result.GetValue(_noBudget);

    private static Option<long?> Whole(string name, string description, long minimum, long maximum) => new(name)
    {
        Description = description,
        HelpName = "N",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < minimum || value > maximum)
            {
                result.AddError($"{name} must be a whole number from {minimum} to {maximum}, got '{text}'");
                return null;
            }
            return value;
        },
    };

    /// <summary>Limits and budget in a few words, for tables: <c>100 rpm, 50000 tpm, 8 conc; $10/month</c>; "-" when none.</summary>
    public static string Describe(GatewayLimits? limits, BudgetSpec? budget)
    {
        var parts = new List<string>();
        if (limits?.RequestsPerMinute is { } r) parts.Add(string.Create(CultureInfo.InvariantCulture, $"{r} rpm"));
        if (limits?.TokensPerMinute is { } t) parts.Add(string.Create(CultureInfo.InvariantCulture, $"{t} tpm"));
        if (limits?.MaxConcurrent is { } c) parts.Add(string.Create(CultureInfo.InvariantCulture, $"{c} conc"));
        if (budget is not null) parts.Add(string.Create(CultureInfo.InvariantCulture, $"${budget.AmountUsd}/{budget.Period}"));
        return parts.Count == 0 ? "-" : string.Join(", ", parts);
    }
}
