using Shoal.ControlPlane.Edges;
using Shoal.Edge.Gateway;

namespace Shoal.Server;

/// <summary>
/// Ships the in-process edge's usage spool straight to the store (no socket): one batch at a time,
/// acknowledged after the store committed; a failed store is retried after a pause.
/// </summary>
public sealed partial class StoreUsageShipper(UsageSpool spool, UsageIntake intake, ILogger<StoreUsageShipper> logger) : BackgroundService
{
    /// <summary>Longest wait between looks at the spool when nothing wakes the shipper.</summary>
    public static readonly TimeSpan Idle = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var available = new SemaphoreSlim(0, 1);
        void Wake()
        {
            try
            {
                available.Release();
            }
            catch (Exception e) when (e is SemaphoreFullException or ObjectDisposedException)
            {
                // Already woken, or stopping.
            }
        }
        spool.Available += Wake;
        try
        {
            spool.ResendInFlight();
            while (!stoppingToken.IsCancellationRequested)
            {
                if (spool.TakeBatch() is { } batch)
                {
                    try
                    {
                        var result = await intake.StoreAsync("in-process", batch.Sequence, batch.Records, stoppingToken);
                        if (result.Stored) spool.Acknowledge(batch.Sequence);
                        continue;
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        LogStoreFailed(logger, batch.Records.Length, e.Message);
                        spool.ResendInFlight();
                        await Task.Delay(Idle, stoppingToken);
                        continue;
                    }
                }
                await available.WaitAsync(Idle, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: what is left in the spool ships at the next start.
        }
        finally
        {
            spool.Available -= Wake;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage records ({Count}) could not be stored ({Error}); they stay in the spool and are retried")]
    private static partial void LogStoreFailed(ILogger logger, int count, string error);
}
