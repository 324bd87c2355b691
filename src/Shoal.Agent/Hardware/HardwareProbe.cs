using System.Globalization;
using System.Runtime.InteropServices;
using Shoal.Contracts;

namespace Shoal.Agent.Hardware;

/// <summary>CPU, memory, disk, OS and host name of this machine.</summary>
public static class HardwareProbe
{
    public static NodeHardware Describe(IReadOnlyList<GpuInfo> gpus, string dataDir) => new()
    {
        Gpus = [.. gpus],
        CpuCores = Environment.ProcessorCount,
        MemoryMiB = TotalMemoryMiB(),
        DiskFreeMiB = FreeDiskMiB(dataDir),
        Os = RuntimeInformation.OSDescription,
        Hostname = Environment.MachineName,
    };

    /// <summary>MemTotal from <c>/proc/meminfo</c> text, in MiB; null when absent.</summary>
    public static long? ParseMemTotalMiB(string meminfo)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal))
            {
                continue;
            }
            var value = line["MemTotal:".Length..].Trim();
            var space = value.IndexOf(' ', StringComparison.Ordinal);
            var number = space < 0 ? value : value[..space];
            if (long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
            {
                return kib / 1024;
            }
        }
        return null;
    }

    private static long TotalMemoryMiB()
    {
        try
        {
            if (File.Exists("/proc/meminfo") && ParseMemTotalMiB(File.ReadAllText("/proc/meminfo")) is { } mib)
            {
                return mib;
            }
        }
        catch (IOException)
        {
        }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024 * 1024);
    }

    private static long FreeDiskMiB(string dataDir)
    {
        try
        {
            return new DriveInfo(Path.GetFullPath(dataDir)).AvailableFreeSpace / (1024 * 1024);
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return 0;
        }
    }
}
