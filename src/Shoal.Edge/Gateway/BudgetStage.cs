using System.Collections.Concurrent;
using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Gateway;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's budget stage (issue 16): applies when the call's key or its project has a
/// <see cref="BudgetSpec"/>. Before the request goes out it reserves the request's most possible cost
/// (<see cref="Cost.MostOf"/>) against every budget that applies, atomically, and refuses it (429,
/// <c>insufficient_quota</c>) when it does not fit beside what was spent and what requests in flight
/// reserved; when it ends the reservation is released and the actual cost (<see cref="GatewayCall.CostUsd"/>)
/// added. So requests together overshoot a budget only by what they cost beyond their reservations.
/// Counters live in this edge, or in Redis when one is configured; Redis configured but unreachable:
/// 503 (budgets fail closed).
/// </summary>
public sealed partial class BudgetStage : IGatewayAdmission
{
    public const string StageName = "budget";

    private readonly IProjectGrantSource _projects;
    private readonly BudgetOptions _options;
    private readonly TimeProvider _time;
    private readonly IBudgetCounters _counters;
    private readonly ILogger<BudgetStage> _logger;
    // Scope → the pushed spending floor and the period it was first seen in: a floor counts only in
    // that period, so a figure pushed before a rollover does not carry into the new period.
    private readonly ConcurrentDictionary<string, (decimal Floor, string Window)> _floors = new(StringComparer.Ordinal);
    // 1 while the counters are unreachable: logged once when it starts and once when it ends.
    private int _unavailable;

    public BudgetStage(IProjectGrantSource projects, BudgetOptions options, GatewayRedis redis, TimeProvider time, ILogger<BudgetStage> logger)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _projects = projects;
        _options = options;
        _time = time;
        _logger = logger;
        _counters = redis.Configured ? new RedisBudgetCounters(redis, logger) : new LocalBudgetCounters(time);
    }

    internal IBudgetCounters Counters => _counters;

    public string Name => StageName;

    public bool Skips(GatewayCall call) => call.Grant?.Budget is null && ProjectBudget(call) is null;

    // Token figures matter only at a token price.
    public bool NeedsBody(GatewayCall call) => Cost.HasTokenPrice(call.Route.Price);

    public async ValueTask<AdmissionResult> AdmitAsync(GatewayCall call, CancellationToken ct)
    {
        var scopes = Scopes(call);
        if (scopes.Length == 0) return AdmissionResult.Admit;
        var most = Cost.MostOf(call, _options.DefaultMaxTokens, _options.ReservedDuration);
        var nanos = BudgetMoney.ToNanos(most);
        BudgetCheck check;
        try
        {
            check = await _counters.TryReserveAsync(scopes, call.RequestId, nanos, ct);
        }
        catch (BudgetUnavailableException e)
        {
            if (Interlocked.Exchange(ref _unavailable, 1) == 0) LogUnavailable(_logger, e.Message);
            return AdmissionResult.Refuse(StatusCodes.Status503ServiceUnavailable, "server_error", "budget_unavailable",
                $"budgets cannot be checked: {e.Message}; requests under a budget are refused until it is back (budgets fail closed)",
                TimeSpan.FromSeconds(5));
        }
        if (Volatile.Read(ref _unavailable) == 1 && Interlocked.Exchange(ref _unavailable, 0) == 1) LogAvailable(_logger);
        if (check.Admitted)
        {
            call.BudgetTicket = new Ticket(scopes, nanos);
            call.ReservedCostUsd = most;
            return AdmissionResult.Admit;
        }
        var scope = scopes[check.Refused];
        var window = scope.Window;
        var exhausted = check.SpentNanos >= scope.LimitNanos;
        var message = string.Create(CultureInfo.InvariantCulture,
            $"budget exceeded: {Describe(scope.Scope)} has spent ${Usd(check.SpentNanos)} of its ${Usd(scope.LimitNanos)} budget for the {window.Period} starting {window.Start:yyyy-MM-dd} (UTC)");
        message += exhausted
            ? string.Create(CultureInfo.InvariantCulture, $"; it resets at {window.End:yyyy-MM-ddTHH:mm:ssZ}")
            : string.Create(CultureInfo.InvariantCulture,
                $", ${Usd(check.ReservedNanos)} is reserved by requests in flight, and this request may cost up to ${Usd(nanos)} (reserved before it goes out); it resets at {window.End:yyyy-MM-ddTHH:mm:ssZ}");
        // Used up: nothing before the next period. Short only because of requests in flight: soon, when they settle.
        var retryAfter = exhausted || check.SpentNanos + nanos > scope.LimitNanos ? window.End - _time.GetUtcNow() : TimeSpan.FromSeconds(1);
        return AdmissionResult.Refuse(StatusCodes.Status429TooManyRequests, "insufficient_quota", "insufficient_quota", message, retryAfter);
    }

    public void Complete(GatewayCall call)
    {
        if (call.BudgetTicket is not Ticket ticket) return;
        call.BudgetTicket = null;
        _counters.Settle(ticket.Scopes, call.RequestId, ticket.ReservedNanos, BudgetMoney.ToNanos(call.CostUsd));
    }

    public void WriteHeaders(GatewayCall call, IHeaderDictionary headers)
    {
    }

    private BudgetSpec? ProjectBudget(GatewayCall call) =>
        _projects.Projects.TryGetValue(call.Project, out var grant) ? grant.Budget : null;

    /// <summary>The budgets the call must fit: its key's, then its project's.</summary>
    private BudgetScope[] Scopes(GatewayCall call)
    {
        var now = _time.GetUtcNow();
        var keyBudget = call.Grant?.Budget;
        _projects.Projects.TryGetValue(call.Project, out var project);
        var projectBudget = project?.Budget;
        var count = (keyBudget is null ? 0 : 1) + (projectBudget is null ? 0 : 1);
        var scopes = new BudgetScope[count];
        var i = 0;
        // A key without an id (a control plane before ids) is counted with every such key of its project: never unbounded.
        if (keyBudget is not null) scopes[i++] = Scope("key:" + (call.KeyId ?? call.Project + "/?"), keyBudget, call.Grant!.SpentUsd, now);
        if (projectBudget is not null) scopes[i] = Scope("project:" + call.Project, projectBudget, project!.SpentUsd, now);
        return scopes;
    }

    private BudgetScope Scope(string scope, BudgetSpec budget, decimal? pushedSpent, DateTimeOffset now)
    {
        var window = BudgetWindow.Of(budget.Period, now);
        return new BudgetScope(scope, window, BudgetMoney.ToNanos(budget.AmountUsd), BudgetMoney.ToNanos(Floor(scope, pushedSpent, window)));
    }

    private decimal Floor(string scope, decimal? pushed, BudgetWindow window)
    {
        if (pushed is not { } value || value <= 0) return 0;
        var id = window.Id;
        var seen = _floors.AddOrUpdate(scope, static (_, a) => (a.value, a.id), static (_, old, a) => old.Floor == a.value ? old : (a.value, a.id), (value, id));
        return seen.Window == id ? seen.Floor : 0;
    }

    private static string Describe(string scope) =>
        scope.StartsWith("key:", StringComparison.Ordinal) ? $"key {scope[4..]}" : $"project '{scope[8..]}'";

    private static string Usd(long nanos) => BudgetMoney.ToUsd(nanos).ToString("0.######", CultureInfo.InvariantCulture);

    /// <summary>A request's reservations: the scopes it was reserved in (their periods included) and how much.</summary>
    private sealed record Ticket(BudgetScope[] Scopes, long ReservedNanos);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Budgets cannot be checked: {Reason}; requests under a budget are refused until they can (budgets fail closed)")]
    private static partial void LogUnavailable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Budgets can be checked again")]
    private static partial void LogAvailable(ILogger logger);
}
