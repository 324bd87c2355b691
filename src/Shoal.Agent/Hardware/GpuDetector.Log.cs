
namespace Shoal.Agent.Hardware;

public sealed partial class GpuDetector
{
    [LoggerMessage(Level = LogLevel.Information, Message = "nvidia-smi not found at '{Path}' ({Error}); this node reports no GPUs")]
    private partial void LogNoNvidiaSmi(string path, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "nvidia-smi exited with code {ExitCode}: {Output}; this node reports no GPUs")]
    private partial void LogNvidiaSmiFailed(int exitCode, string output);

    [LoggerMessage(Level = LogLevel.Warning, Message = "nvidia-smi did not answer within {Timeout}; this node reports no GPUs")]
    private partial void LogNvidiaSmiTimedOut(TimeSpan timeout);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Skipped an nvidia-smi line: {Problem}")]
    private partial void LogUnreadableLine(string problem);

    [LoggerMessage(Level = LogLevel.Information, Message = "GPU {Index}: {Name} ({Type}, {MemoryMiB} MiB)")]
    private partial void LogGpuFound(int index, string name, string type, long memoryMiB);
}
