using System.Collections.Concurrent;
using System.Diagnostics;

namespace Shoal.Edge.Tests;

/// <summary>A built executable of this repository started as a child process, with its output kept for diagnosis.</summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    public string Output => string.Join('\n', _output);

    /// <summary>Path of a built apphost, e.g. <c>src/Shoal.Cli</c> + <c>shoal</c>, in this test assembly's configuration.</summary>
    public static string BuiltExecutable(string projectDir, string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Shoal.slnx"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("cannot find the repository root (Shoal.slnx) above " + AppContext.BaseDirectory);
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        var path = Path.Combine(dir.FullName, projectDir, "bin", configuration, "net10.0", name);
        return File.Exists(path) ? path : throw new FileNotFoundException($"build {projectDir} first", path);
    }

    public static ChildProcess Start(string executable, IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        if (env is not null)
        {
            foreach (var (k, v) in env) info.Environment[k] = v;
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new ChildProcess(process);
        process.OutputDataReceived += (_, e) => result.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => result.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        if (line.StartsWith("listening ", StringComparison.Ordinal)) _listening.TrySetResult(line["listening ".Length..].Trim());
    }

    /// <summary>The address a test host printed as <c>listening URL</c>.</summary>
    public Task<string> ListeningAsync(TimeSpan timeout) => _listening.Task.WaitAsync(timeout);

    /// <summary>Peak resident memory of the process (VmHWM), in bytes.</summary>
    public long PeakResidentBytes() => StatusKilobytes("VmHWM:") * 1024;

    private long StatusKilobytes(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"{field} not in /proc/{_process.Id}/status");
    }

    /// <summary>SIGKILL, as when a machine dies.</summary>
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
}
