namespace Shoal.Testing;

/// <summary>Polls a condition on real events (sockets, processes) with a deadline.</summary>
public static class Eventually
{
    public static async Task<T> GetAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        T value;
        while (true)
        {
            value = await probe();
            try
            {
                if (done(value)) return value;
            }
            catch (InvalidOperationException) when (DateTime.UtcNow <= deadline)
            {
                // The condition cannot be judged yet (say, Single() of a list still empty): not done.
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what ?? "condition"}; last value: {value}");
            await Task.Delay(25);
        }
    }

    public static Task UntilAsync(Func<bool> condition, TimeSpan? timeout = null, string? what = null) =>
        GetAsync(() => Task.FromResult(condition()), static ok => ok, timeout, what);
}
