namespace Shoal.Agent;

/// <summary>Delays that end quietly on cancellation, for loops that check their token themselves.</summary>
internal static class TimeProviderExtensions
{
    /// <summary>Waits <paramref name="delay"/> on <paramref name="time"/>; false when cancelled instead.</summary>
    public static async Task<bool> TryDelayAsync(this TimeProvider time, TimeSpan delay, CancellationToken ct)
    {
        try
        {
            await Task.Delay(delay, time, ct);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
