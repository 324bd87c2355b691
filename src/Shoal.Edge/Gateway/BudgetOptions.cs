namespace Shoal.Edge.Gateway;

/// <summary>How the budget stage sizes a request's reservation (its most possible cost) before it goes out.</summary>
public sealed class BudgetOptions
{
    /// <summary>Completion tokens reserved for a request that names no <c>max_tokens</c>. Default 4096.</summary>
    public long DefaultMaxTokens { get; set; } = 4096;

    /// <summary>
    /// Time on a replica reserved for a request at a per-GPU-second price (× the cluster's GPUs per
    /// replica). A request that runs longer is still charged in full when it ends, so budgets may be
    /// exceeded by the excess of the requests in flight over this. Default 120 s.
    /// </summary>
    public TimeSpan ReservedDuration { get; set; } = TimeSpan.FromSeconds(120);
}
