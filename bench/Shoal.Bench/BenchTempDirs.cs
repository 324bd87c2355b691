using System.Globalization;
using System.Runtime.InteropServices;

namespace Shoal.Bench;

/// <summary>
/// The benchmarks' temporary directories (<c>/tmp/shoal-*bench-*</c>). Each holds an owner file
/// with the benchmark's pid and start time; they are removed when the benchmark ends, also on
/// SIGINT and SIGTERM, and a benchmark starting removes those of benchmarks no longer running
/// (killed with SIGKILL, or from before owner files existed and untouched for an hour).
/// </summary>
internal static partial class BenchTempDirs
{
    private const string OwnerFile = ".shoal-bench-owner";
    private static readonly string[] s_prefixes = ["shoal-bench-", "shoal-proxy-bench-", "shoal-routes-bench-"];
    private static readonly List<DirectoryInfo> s_live = [];
    private static readonly List<PosixSignalRegistration> s_signals = [];

    /// <summary>Removes stale directories of dead benchmarks and arranges for this one's to go on SIGINT/SIGTERM and at exit.</summary>
    public static void Install()
    {
        foreach (var signal in (PosixSignal[])[PosixSignal.SIGINT, PosixSignal.SIGTERM])
        {
            // The default action (ending the process) follows the handler: the processes the
            // benchmark started (servers, agents, replicas, load generators) go first, then its directories.
            s_signals.Add(PosixSignalRegistration.Create(signal, _ =>
            {
                TerminateChildren();
                RemoveAll();
            }));
        }
        AppDomain.CurrentDomain.ProcessExit += (_, _) => RemoveAll();
        var removed = SweepStale(Path.GetTempPath(), DateTime.UtcNow);
        if (removed > 0) Console.Error.WriteLine($"removed {removed} temporary director{(removed == 1 ? "y" : "ies")} left by benchmarks that no longer run");
    }

    /// <summary>A new temporary directory owned by this benchmark.</summary>
    public static DirectoryInfo Create(string prefix)
    {
        var dir = Directory.CreateTempSubdirectory(prefix);
        File.WriteAllText(Path.Combine(dir.FullName, OwnerFile), OwnerText(Environment.ProcessId));
        lock (s_live) s_live.Add(dir);
        return dir;
    }

    /// <summary>Removes this benchmark's directory now (its end).</summary>
    public static void Remove(DirectoryInfo dir)
    {
        lock (s_live) s_live.Remove(dir);
        TryDelete(dir.FullName);
    }

    /// <summary>Removes the benchmark directories under <paramref name="tempRoot"/> whose owner is gone; returns how many.</summary>
    internal static int SweepStale(string tempRoot, DateTime now)
    {
        var removed = 0;
        foreach (var prefix in s_prefixes)
        {
            foreach (var path in Directory.EnumerateDirectories(tempRoot, prefix + "*"))
            {
                string? owner = null;
                try
                {
                    owner = File.ReadAllText(Path.Combine(path, OwnerFile)).Trim();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                }
                var stale = owner is null
                    ? now - Directory.GetLastWriteTimeUtc(path) > TimeSpan.FromHours(1)
                    : !IsRunning(owner);
                if (stale && TryDelete(path)) removed++;
            }
        }
        return removed;
    }

    private static void RemoveAll()
    {
        DirectoryInfo[] dirs;
        lock (s_live)
        {
            dirs = [.. s_live];
            s_live.Clear();
        }
        foreach (var dir in dirs) TryDelete(dir.FullName);
    }

    /// <summary>SIGTERM to every process this one started, and waits up to 5 s for them to go.</summary>
    private static void TerminateChildren()
    {
        var children = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) == Environment.ProcessId) children.Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
            {
            }
        }
        foreach (var pid in children) _ = Kill(pid, 15);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (children.Any(p => Directory.Exists($"/proc/{p.ToString(CultureInfo.InvariantCulture)}") && !IsZombie(p)) && DateTime.UtcNow < deadline) Thread.Sleep(50);
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    // "pid start-ticks": the pid alone may have been reused by another process since.
    private static string OwnerText(int pid) => $"{pid.ToString(CultureInfo.InvariantCulture)} {StartTicks(pid)?.ToString(CultureInfo.InvariantCulture) ?? "?"}";

    private static bool IsRunning(string owner)
    {
        var parts = owner.Split(' ');
        return parts.Length == 2 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid) && OwnerText(pid) == owner;
    }

    private static long? StartTicks(int pid)
    {
        try
        {
            // Field 22 of /proc/PID/stat, counted after the command name (which may hold spaces).
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    private static bool TryDelete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
