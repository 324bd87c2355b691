namespace Shoal.Sim;

/// <summary>
/// How long the simulated GPU takes. A decode step (one output token for every running request)
/// costs <c>DecodePerToken × (1 + BatchSlowdown × (running − 1)) / speed</c>. The first token needs
/// one step plus the prefill of the prompt, <c>PrefillPerToken × promptTokens / speed</c>, so time to
/// first token grows with prompt length and with the batch.
/// </summary>
public sealed class LatencyModel
{
    public LatencyModel(TimeSpan prefillPerToken, TimeSpan decodePerToken, double batchSlowdown, double speed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(prefillPerToken, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(decodePerToken, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegative(batchSlowdown);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(speed);
        PrefillPerToken = prefillPerToken;
        DecodePerToken = decodePerToken;
        BatchSlowdown = batchSlowdown;
        Speed = speed;
    }

    public TimeSpan PrefillPerToken { get; }

    public TimeSpan DecodePerToken { get; }

    public double BatchSlowdown { get; }

    public double Speed { get; }

    public static LatencyModel From(SimOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new(options.PrefillPerToken, options.DecodePerToken, options.BatchSlowdown, options.EffectiveSpeed);
    }

    /// <summary>Time of one decode step while <paramref name="running"/> requests (this one included) share the batch.</summary>
    public TimeSpan DecodeStep(int running)
    {
        var extra = Math.Max(0, running - 1);
        return TimeSpan.FromTicks((long)(DecodePerToken.Ticks * (1 + (BatchSlowdown * extra)) / Speed));
    }

    /// <summary>Time from taking a slot to the first token: prefill of the prompt plus one decode step.</summary>
    public TimeSpan FirstToken(int promptTokens, int running) =>
        TimeSpan.FromTicks((long)(PrefillPerToken.Ticks * (double)Math.Max(0, promptTokens) / Speed)) + DecodeStep(running);
}
