namespace Shoal.Sim;

public static partial class SimServer
{
    [LoggerMessage(Level = LogLevel.Information, Message = "shoal sim listening on {Address}: model {Model}, gpu {GpuType} (speed {Speed}), {Slots} batch slots, startup delay {StartupDelayMs} ms")]
    private static partial void LogListening(ILogger logger, Uri address, string model, string gpuType, double speed, int slots, double startupDelayMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The warm-up did not finish ({Error}); the first requests may be slower")]
    private static partial void LogWarmUpFailed(ILogger logger, string error);
}
