using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Shoal.Testing;

/// <summary>The real <c>shoal</c> executable started as a child process, with its output kept for diagnosis.</summary>
public sealed partial class ShoalProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private ShoalProcess(Process process, string name)
    {
        _process = process;
        Name = name;
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output => string.Join('\n', _output);

    /// <summary>Path of the built <c>shoal</c> apphost, next to this test assembly's configuration.</summary>
    public static string ExecutablePath
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Shoal.slnx"))) dir = dir.Parent;
            if (dir is null) throw new InvalidOperationException("cannot find the repository root (Shoal.slnx) above " + AppContext.BaseDirectory);
            var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
            var path = Path.Combine(dir.FullName, "src", "Shoal.Cli", "bin", configuration, "net10.0", "shoal");
            return File.Exists(path) ? path : throw new FileNotFoundException("build src/Shoal.Cli first", path);
        }
    }

    /// <param name="netns">Run inside this network namespace (<c>ip netns exec</c>, which execs, so the PID is shoal's).</param>
    /// <param name="fileLimit">Run with this limit on open files, soft and hard (<c>ulimit -n</c> in a shell that then execs shoal, so the PID is shoal's).</param>
    /// <param name="executable">Another <c>shoal</c> to run (an installed one) instead of <see cref="ExecutablePath"/>.</param>
    /// <param name="ownProcessGroup">Run as the leader of a new session and process group (<c>setsid</c>, which execs, so the PID is shoal's and the group's id), as a shell runs a foreground command; see <see cref="SignalGroup"/>.</param>
    public static ShoalProcess Start(string name, IEnumerable<string> args, IDictionary<string, string>? env = null, string? netns = null, int? fileLimit = null, string? executable = null, bool ownProcessGroup = false)
    {
        var shoal = executable ?? ExecutablePath;
        if ((netns is not null ? 1 : 0) + (fileLimit is not null ? 1 : 0) + (ownProcessGroup ? 1 : 0) > 1) throw new ArgumentException("only one of a network namespace, a file limit and an own process group is supported");
        var info = new ProcessStartInfo(netns is not null ? "ip" : fileLimit is not null ? "/bin/sh" : ownProcessGroup ? "setsid" : shoal)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (netns is not null)
        {
            foreach (var a in (string[])["netns", "exec", netns, shoal]) info.ArgumentList.Add(a);
        }
        if (fileLimit is { } limit)
        {
            foreach (var a in (string[])["-c", $"ulimit -n {limit} && exec \"$0\" \"$@\"", shoal]) info.ArgumentList.Add(a);
        }
        if (ownProcessGroup) info.ArgumentList.Add(shoal);
        foreach (var a in args) info.ArgumentList.Add(a);
        if (env is not null)
        {
            foreach (var (k, v) in env) info.Environment[k] = v;
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new ShoalProcess(process, name);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) result._output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) result._output.Enqueue(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>Waits for the process to exit on its own (killing it after <paramref name="timeout"/>) and returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Name} did not exit within {timeout}: {Output}");
        }
        return _process.ExitCode;
    }

    /// <summary>SIGTERM, then waits for a clean exit; kills the tree if it does not come.</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (_process.HasExited) return;
        _ = Kill(_process.Id, 15);
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    /// <summary>Sends <paramref name="signal"/> to the whole process group this process leads (as a terminal's Ctrl-C does), children included.</summary>
    public void SignalGroup(int signal)
    {
        if (Kill(-_process.Id, signal) != 0) throw new InvalidOperationException($"kill(-{_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Process ids in the process group this process leads (from /proc), itself included while it runs.</summary>
    public IReadOnlyList<int> GroupMembers()
    {
        var members = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so read after the last ')'.
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[2], System.Globalization.CultureInfo.InvariantCulture) == _process.Id && fields[0] != "Z") members.Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return members;
    }

    /// <summary>SIGKILL of this process only (its children live on, as when a machine's agent crashes).</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: false);
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>Finds replica processes by the SHOAL_REPLICA_ID in their environment (Linux /proc).</summary>
public static class ReplicaProcesses
{
    public static Dictionary<string, List<int>> Find()
    {
        var result = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string environ;
            try
            {
                environ = File.ReadAllText(Path.Combine(dir, "environ"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var entry in environ.Split('\0'))
            {
                if (!entry.StartsWith("SHOAL_REPLICA_ID=", StringComparison.Ordinal)) continue;
                var id = entry["SHOAL_REPLICA_ID=".Length..];
                if (!result.TryGetValue(id, out var list)) result[id] = list = [];
                list.Add(pid);
            }
        }
        return result;
    }
}
