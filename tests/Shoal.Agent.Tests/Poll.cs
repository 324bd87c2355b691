namespace Shoal.Agent.Tests;

/// <summary>Waits for real process and socket events, with a deadline; never for time logic.</summary>
internal static class Poll
{
    public static async Task UntilAsync(Func<bool> condition, string what, int timeoutMs = 15_000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }
            await Task.Delay(20);
        }
    }

    public static async Task<T> UntilAsync<T>(Func<T?> value, string what, int timeoutMs = 15_000) where T : class
    {
        T? result = null;
        await UntilAsync(() => (result = value()) is not null, what, timeoutMs);
        return result!;
    }
}
