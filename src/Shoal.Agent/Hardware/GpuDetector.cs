using System.ComponentModel;
using System.Diagnostics;
using Shoal.Contracts;

namespace Shoal.Agent.Hardware;

/// <summary>Finds the node's GPUs by running nvidia-smi; a machine without it simply has none.</summary>
public sealed partial class GpuDetector(string nvidiaSmiPath, ILogger<GpuDetector> logger)
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);

    public async Task<IReadOnlyList<GpuInfo>> DetectAsync(CancellationToken ct)
    {
        var psi = new ProcessStartInfo(nvidiaSmiPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in NvidiaSmiParser.Arguments)
        {
            psi.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new Win32Exception("process did not start");
        }
        catch (Win32Exception ex)
        {
            LogNoNvidiaSmi(nvidiaSmiPath, ex.Message);
            return [];
        }

        using (process)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(s_timeout);
            try
            {
                var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
                var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
                await process.WaitForExitAsync(timeout.Token);
                var output = await stdout;
                if (process.ExitCode != 0)
                {
                    LogNvidiaSmiFailed(process.ExitCode, (await stderr).Trim() is { Length: > 0 } e ? e : output.Trim());
                    return [];
                }
                var result = NvidiaSmiParser.Parse(output);
                foreach (var problem in result.Problems)
                {
                    LogUnreadableLine(problem);
                }
                foreach (var gpu in result.Gpus)
                {
                    LogGpuFound(gpu.Index, gpu.Name, gpu.Type, gpu.MemoryMiB);
                }
                return result.Gpus;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                LogNvidiaSmiTimedOut(s_timeout);
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
                return [];
            }
        }
    }
}
