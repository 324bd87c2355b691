using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>
/// One admission stage of the gateway (rate limits, budgets). Stages run in registration order
/// before a request goes out; when one refuses, the stages before it are completed (their
/// reservations released) and the client gets the refusal. Every admitted request is completed
/// exactly once, when it ends, with its final usage on the call.
/// </summary>
public interface IGatewayAdmission
{
    /// <summary>The stage's name in metrics and logs: <c>limits</c> or <c>budget</c>.</summary>
    string Name { get; }

    /// <summary>True when this stage has nothing to do for the call (no limits or budget apply): then <see cref="AdmitAsync"/>, <see cref="Complete"/> and <see cref="WriteHeaders"/> are not called.</summary>
    bool Skips(GatewayCall call);

    /// <summary>
    /// True when this stage wants the request's token figures (<see cref="GatewayCall.Inspected"/>)
    /// before admitting: the edge then reads and inspects the body before <see cref="AdmitAsync"/>.
    /// </summary>
    bool NeedsBody(GatewayCall call);

    /// <summary>Reserves what the call needs, or refuses it.</summary>
    ValueTask<AdmissionResult> AdmitAsync(GatewayCall call, CancellationToken ct);

    /// <summary>Settles the call's reservations with what it used (<see cref="GatewayCall.TotalTokens"/>, cost); called once per admitted call, also when it failed.</summary>
    void Complete(GatewayCall call);

    /// <summary>Adds this stage's response headers (OpenAI's <c>x-ratelimit-*</c>), on answers and on refusals.</summary>
    void WriteHeaders(GatewayCall call, IHeaderDictionary headers);
}

/// <summary>A stage's answer: admitted, or refused with a status (429 for limits, 402/429/503 for budgets), OpenAI error type/code and a clear message.</summary>
public readonly record struct AdmissionResult(bool Admitted, int Status = 0, string? Type = null, string? Code = null, string? Message = null, TimeSpan? RetryAfter = null)
{
    public static readonly AdmissionResult Admit = new(true);

    public static AdmissionResult Refuse(int status, string type, string code, string message, TimeSpan? retryAfter = null) =>
        new(false, status, type, code, message, retryAfter);
}

/// <summary>Where finished requests go: the usage ledger (a spool shipped to the control plane, or the store in-process). Must not block.</summary>
public interface IUsageLedger
{
    void Record(UsageRecord record);
}

/// <summary>No ledger (the default until one is registered).</summary>
public sealed class NullUsageLedger : IUsageLedger
{
    public void Record(UsageRecord record)
    {
    }
}
