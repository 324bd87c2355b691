using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Agent.Runtimes;

/// <summary>Settings of <see cref="ProcessRuntime"/>.</summary>
public sealed class ProcessRuntimeOptions
{
    /// <summary>The built-in image that runs the simulator.</summary>
    public const string SimImage = ProcessImagePolicy.SimImage;

    /// <summary>
    /// Variables the agent's own environment holds that no replica gets: the provisioning token
    /// (<c>shoal agent</c> reads it from there).
    /// </summary>
    public static readonly IReadOnlyList<string> WithheldVariables = ["SHOAL_TOKEN"];

    /// <summary>Whether the runtime runs anything at all. Default: false.</summary>
    public bool Enabled { get; set; }

    /// <summary>Image → command line, on top of the built-in <see cref="SimImage"/>. Default: empty.</summary>
    public IReadOnlyDictionary<string, string> Images { get; set; } = new Dictionary<string, string>();

    /// <summary>Command line for <see cref="SimImage"/>. Default: <see cref="AgentOptions.DefaultSimCommand"/>.</summary>
    public string SimCommand { get; set; } = AgentOptions.DefaultSimCommand;

    /// <summary>Directory under which replica logs (<c>&lt;id&gt;.log</c>) and working directories go.</summary>
    public required string ReplicasDir { get; set; }

    /// <summary>
    /// Env names a cluster may give these images beyond <see cref="ProcessImagePolicy"/>'s rule
    /// (the operator's <c>--allow-env</c>). Default: none.
    /// </summary>
    public IReadOnlySet<string> AllowedEnv { get; set; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Size at which a replica log is rotated. Default: 10 MiB.</summary>
    public long MaxLogBytes { get; set; } = 10 * 1024 * 1024;

    /// <summary>
    /// Leave replicas running when the agent exits (stopped or restarted), for the next agent to
    /// re-adopt, as the docker runtime does. Default: false (they stop with the agent, as <c>shoal dev</c>
    /// wants). Replicas an agent left behind by dying (kill -9, a crash) are re-adopted either way.
    /// </summary>
    public bool KeepReplicasOnExit { get; set; }

    /// <summary>How often a replica's log size is checked for rotation. Default: 5 s.</summary>
    public TimeSpan LogCheckInterval { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// Runs allow-listed local commands as replicas: <c>shoal/sim</c> runs <c>shoal sim</c>, other
/// images only when the operator listed them. For dev, tests, benchmarks and images the operator
/// trusts (like Nomad's <c>raw_exec</c>): a replica runs as the agent's user, outside any container.
/// So a cluster's env is held to <see cref="ProcessImagePolicy"/>'s allow list, its args are passed
/// after <c>--</c> (never as options of the command) and none may start with <c>@</c>.
/// </summary>
/// <remarks>
/// A replica's output goes straight to its log file (the process does not write into a pipe to the
/// agent), and its pid, start time (from <c>/proc</c>), port and generation are recorded in
/// <c>replicas/&lt;id&gt;.process</c>. So a replica outlives an agent that dies, and the next agent
/// re-adopts it when it is assigned the same replica: same process, same port, no restart. A
/// recorded process is adopted only when <c>/proc/&lt;pid&gt;</c> still has the recorded start time
/// (a reused pid is not ours); a live one of another generation, or no longer assigned, is stopped.
/// </remarks>
public sealed partial class ProcessRuntime : IReplicaRuntime
{
    private readonly ProcessRuntimeOptions _options;
    private readonly Dictionary<string, string> _images;
    private readonly TimeProvider _time;
    private readonly ILogger<ProcessRuntime> _logger;

    public ProcessRuntime(ProcessRuntimeOptions options, TimeProvider timeProvider, ILogger<ProcessRuntime> logger)
    {
        _options = options;
        _time = timeProvider;
        _logger = logger;
        _images = new Dictionary<string, string>(options.Images, StringComparer.Ordinal);
        _images.TryAdd(ProcessRuntimeOptions.SimImage, options.SimCommand);
    }

    public string Name => "process";

    public IReadOnlyCollection<string> Images => _options.Enabled ? _images.Keys : [];

    /// <summary>Env names this node's operator allowed beyond the rule, for hello.</summary>
    public IReadOnlySet<string> AllowedEnv => _options.AllowedEnv;

    public bool CanRun(string image) => _options.Enabled && _images.ContainsKey(image);

    public bool KeepsReplicasOnAgentExit => _options.KeepReplicasOnExit;

    public bool AdoptsReplicas => _options.Enabled;

    public string DescribeRejection(string image) => _options.Enabled
        ? $"image {image} is not allowed by the process runtime on this node"
        : $"image {image} cannot run: the process runtime is disabled on this node";

    /// <summary>The variables every replica process gets, on top of the assignment's env.</summary>
    public static Dictionary<string, string> ReplicaEnvironment(Assignment assignment, int port)
    {
        var env = new Dictionary<string, string>(assignment.Env, StringComparer.Ordinal)
        {
            ["PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["CUDA_VISIBLE_DEVICES"] = string.Join(',', assignment.GpuIndexes),
            ["SHOAL_GPU_TYPE"] = assignment.Gpu,
            ["SHOAL_REPLICA_ID"] = assignment.ReplicaId,
            ["SHOAL_CLUSTER"] = assignment.Cluster,
        };
        return env;
    }

    public Task<IReplicaInstance> StartAsync(Assignment assignment, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        if (!CanRun(assignment.Image))
        {
            throw new ReplicaStartException(DescribeRejection(assignment.Image), permanent: true);
        }
        if (assignment.ReplicaId.AsSpan().IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || assignment.ReplicaId is "." or "..")
        {
            throw new ReplicaStartException($"replica id '{assignment.ReplicaId}' cannot be used as a file name", permanent: true);
        }
        if (Refusal(assignment) is { } refusal)
        {
            throw new ReplicaStartException(refusal, permanent: true);
        }

        IReadOnlyList<string> words;
        try
        {
            words = CommandLine.Split(_images[assignment.Image]);
        }
        catch (FormatException ex)
        {
            throw new ReplicaStartException($"the command line for image {assignment.Image} is invalid: {ex.Message}", permanent: true, ex);
        }
        if (words.Count == 0)
        {
            throw new ReplicaStartException($"the command line for image {assignment.Image} is empty", permanent: true);
        }

        var recordPath = RecordPath(assignment.ReplicaId);
        var logPath = Path.Combine(_options.ReplicasDir, assignment.ReplicaId + ".log");
        if (TryAdopt(assignment, recordPath, logPath) is { } adopted)
        {
            return Task.FromResult<IReplicaInstance>(adopted);
        }

        var port = FreeLoopbackPort();
        var env = ReplicaEnvironment(assignment, port);
        var program = CommandLine.Expand(words[0], env);
        // The shell only sets up the output (appended to the log, so it survives the agent and can be
        // rotated by truncation) and execs: the pid is the replica's own. setsid (no fork: the shell
        // leads no group) puts the replica in a session of its own, so a terminal's Ctrl-C reaches
        // the agent, which stops its replicas in order, and not every replica at once.
        var psi = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            WorkingDirectory = Path.Combine(_options.ReplicasDir, assignment.ReplicaId),
        };
        PrivateFiles.CreateDirectory(_options.ReplicasDir);
        PrivateFiles.CreateDirectory(psi.WorkingDirectory);
        foreach (var a in (string[])["-c", "f=$1; shift; if command -v setsid >/dev/null 2>&1; then set -- setsid \"$@\"; fi; exec \"$@\" </dev/null >>\"$f\" 2>&1", "shoal-replica", logPath, program])
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var word in words.Skip(1))
        {
            psi.ArgumentList.Add(CommandLine.Expand(word, env));
        }
        if (assignment.Args.Length > 0)
        {
            // The cluster's args are operands, never options: `python3 -c`, `--config` and the like
            // stay the operator's to give.
            psi.ArgumentList.Add("--");
            foreach (var word in assignment.Args)
            {
                psi.ArgumentList.Add(CommandLine.Expand(word, env));
            }
        }
        foreach (var name in ProcessRuntimeOptions.WithheldVariables)
        {
            psi.Environment.Remove(name);
        }
        foreach (var (name, value) in env)
        {
            psi.Environment[name] = value;
        }

        ReplicaLog.RotateIfLarger(logPath, _options.MaxLogBytes);
        ReplicaLog.Append(logPath, $"--- shoal: starting {program} on port {port.ToString(CultureInfo.InvariantCulture)} at {_time.GetUtcNow():O}");
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var exited = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.Exited += (_, _) =>
        {
            int code;
            try
            {
                code = process.ExitCode;
            }
            catch (InvalidOperationException)
            {
                code = -1;
            }
            exited.TrySetResult(code);
        };

        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            process.Dispose();
            throw new ReplicaStartException($"cannot run '{program}' for image {assignment.Image}: {ex.Message}", permanent: false, ex);
        }
        var startTicks = ProcStat.StartTicks(process.Id);
        if (startTicks is { } ticks)
        {
            ProcessRecord.Write(recordPath, new ProcessRecord(process.Id, ticks, port, assignment.Generation, assignment.Image));
        }
        LogStarted(assignment.ReplicaId, assignment.Image, process.Id, port);
        return Task.FromResult<IReplicaInstance>(new ProcessReplicaInstance(process, port, exited.Task, logPath, recordPath, _options, _time));
    }

    /// <summary>Why this assignment's env or args may not reach a local process here, or null when they may.</summary>
    public string? Refusal(Assignment assignment)
    {
        var policy = new ProcessImagePolicy(new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal) { [assignment.Image] = _options.AllowedEnv });
        var errors = policy.Check(assignment.Image, assignment.Env.Keys, assignment.Args);
        return errors.Count == 0 ? null : "refused by this node: " + string.Join("; ", errors);
    }

    private string RecordPath(string replicaId) => Path.Combine(_options.ReplicasDir, replicaId + ProcessRecord.Extension);

    // A process an earlier agent started for this replica and left running: adopted when it is
    // really that process and of this generation; anything else recorded is cleared (and stopped).
    private AdoptedReplicaInstance? TryAdopt(Assignment assignment, string recordPath, string logPath)
    {
        if (ProcessRecord.Read(recordPath) is not { } record)
        {
            return null;
        }
        var alive = ProcStat.StartTicks(record.Pid) == record.StartTicks;
        if (alive && record.Generation == assignment.Generation && record.Image == assignment.Image)
        {
            LogAdopted(assignment.ReplicaId, record.Pid, record.Port);
            return new AdoptedReplicaInstance(record, logPath, recordPath, _options, _time);
        }
        if (alive)
        {
            LogRemovingOrphan(assignment.ReplicaId, record.Pid);
            AdoptedReplicaInstance.KillIfSame(record, Sigkill);
        }
        ProcessRecord.Delete(recordPath);
        return null;
    }

    /// <summary>Stops the live processes an earlier agent left for replicas not in <paramref name="keep"/>.</summary>
    public async Task RemoveOrphansAsync(IReadOnlySet<string> keep, CancellationToken ct)
    {
        if (!Directory.Exists(_options.ReplicasDir))
        {
            return;
        }
        foreach (var path in Directory.EnumerateFiles(_options.ReplicasDir, "*" + ProcessRecord.Extension))
        {
            var id = Path.GetFileName(path)[..^ProcessRecord.Extension.Length];
            if (keep.Contains(id) || ProcessRecord.Read(path) is not { } record)
            {
                continue;
            }
            if (ProcStat.StartTicks(record.Pid) == record.StartTicks)
            {
                LogRemovingOrphan(id, record.Pid);
                await using var orphan = new AdoptedReplicaInstance(record, Path.Combine(_options.ReplicasDir, id + ".log"), path, _options, _time);
                await orphan.StopAsync(TimeSpan.FromSeconds(5), ct);
            }
            ProcessRecord.Delete(path);
        }
    }

    private const int Sigkill = 9;

    /// <summary>Streams the replica's log file (<c>replicas/&lt;id&gt;.log</c>); with follow, polls it for more.</summary>
    public async Task StreamLogsAsync(string replicaId, bool follow, int? tail, Func<string, Task> write, CancellationToken ct)
    {
        var path = Path.Combine(_options.ReplicasDir, replicaId + ".log");
        if (replicaId.AsSpan().IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || !File.Exists(path))
        {
            throw new IOException($"replica {replicaId} has no log on this node");
        }
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        if (tail is { } lines)
        {
            stream.Position = TailOffset(stream, lines);
        }
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8);
        var buffer = new char[16 * 1024];
        while (true)
        {
            var n = await reader.ReadAsync(buffer, ct);
            if (n > 0)
            {
                await write(new string(buffer, 0, n));
                continue;
            }
            if (!follow)
            {
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(250), _time, ct);
        }
    }

    // The offset where the last <lines> lines begin (the log is at most MaxLogBytes, so reading it back is bounded).
    private static long TailOffset(FileStream stream, int lines)
    {
        if (lines <= 0)
        {
            return stream.Length;
        }
        var length = stream.Length;
        var buffer = new byte[4096];
        var seen = 0;
        var position = length;
        while (position > 0)
        {
            var size = (int)Math.Min(buffer.Length, position);
            position -= size;
            stream.Position = position;
            stream.ReadExactly(buffer, 0, size);
            for (var i = size - 1; i >= 0; i--)
            {
                // The newline that ends the last line does not count.
                if (buffer[i] == (byte)'\n' && position + i != length - 1 && ++seen == lines)
                {
                    return position + i + 1;
                }
            }
        }
        return 0;
    }

    /// <summary>A port that was free on 127.0.0.1 a moment ago.</summary>
    public static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} ({Image}) started as pid {Pid} on port {Port}")]
    private partial void LogStarted(string replicaId, string image, int pid, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: re-adopted running process {Pid} on port {Port}")]
    private partial void LogAdopted(string replicaId, int pid, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: stopping process {Pid} an earlier agent left running (not assigned here, or of another generation)")]
    private partial void LogRemovingOrphan(string replicaId, int pid);
}

/// <summary>A replica running as a local process this agent started.</summary>
public sealed partial class ProcessReplicaInstance : IReplicaInstance
{
    private const int Sigterm = 15;
    // SIGCONT on Linux (x86-64 and arm64 alike).
    private const int Sigcont = 18;
    private readonly Process _process;
    private readonly string _recordPath;
    private readonly ProcessRuntimeOptions _options;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _logs;
    private readonly string _logPath;

    internal ProcessReplicaInstance(Process process, int port, Task<int> exited, string logPath, string recordPath, ProcessRuntimeOptions options, TimeProvider time)
    {
        _process = process;
        _logPath = logPath;
        HostPort = port;
        _recordPath = recordPath;
        _options = options;
        _time = time;
        ProcessId = process.Id;
        Exited = exited.ContinueWith(t =>
        {
            ProcessRecord.Delete(recordPath);
            return t.Result;
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        _logs = ReplicaLog.WatchAsync(logPath, options, time, Exited, _cts.Token);
    }

    public int HostPort { get; }

    public Task<int> Exited { get; }

    /// <summary>Once it has ended: its exit code and what it wrote last (<see cref="ExitOutput"/>), or null when it wrote nothing.</summary>
    public string? ExitReason =>
        Exited.IsCompletedSuccessfully && ExitOutput.Format(ReplicaLog.SinceLastStart(_logPath)) is { Length: > 0 } output
            ? $"exited with code {Exited.Result.ToString(CultureInfo.InvariantCulture)}{output}"
            : null;

    public int ProcessId { get; }

    public async Task StopAsync(TimeSpan grace, CancellationToken ct)
    {
        if (Exited.IsCompleted)
        {
            return;
        }
        if (!OperatingSystem.IsWindows() && grace > TimeSpan.Zero)
        {
            _ = Kill(ProcessId, Sigterm);
            // A stopped process (SIGSTOP: hung on purpose, or by a debugger) acts on SIGTERM only once continued.
            _ = Kill(ProcessId, Sigcont);
            var delay = Task.Delay(grace, _time, ct);
            await Task.WhenAny(Exited, delay);
        }
        if (!Exited.IsCompleted)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
            catch (Win32Exception)
            {
            }
            await Exited.WaitAsync(TimeSpan.FromSeconds(10), ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Left running for the next agent when the runtime keeps replicas; else it goes with us.
        if (!Exited.IsCompleted && !_options.KeepReplicasOnExit)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
        }
        await _cts.CancelAsync();
        await _logs.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _cts.Dispose();
        _process.Dispose();
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>
/// A replica process an earlier agent started and this one re-adopted: not our child, so its end
/// is seen by polling <c>/proc</c> (its exit code is not known), and it is signalled directly.
/// </summary>
public sealed partial class AdoptedReplicaInstance : IReplicaInstance
{
    private const int Sigterm = 15;
    private const int Sigkill = 9;
    private const int Sigcont = 18;
    private static readonly TimeSpan s_poll = TimeSpan.FromMilliseconds(100);
    private readonly ProcessRecord _record;
    private readonly ProcessRuntimeOptions _options;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _cts = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _watch;
    private readonly Task _logs;

    internal AdoptedReplicaInstance(ProcessRecord record, string logPath, string recordPath, ProcessRuntimeOptions options, TimeProvider time)
    {
        _record = record;
        _options = options;
        _time = time;
        _watch = WatchAsync(recordPath, _cts.Token);
        _logs = ReplicaLog.WatchAsync(logPath, options, time, _exited.Task, _cts.Token);
    }

    public int HostPort => _record.Port;

    public int ProcessId => _record.Pid;

    public Task<int> Exited => _exited.Task;

    public string? ExitReason => "the re-adopted process ended (exit code unknown)";

    private bool IsAlive => ProcStat.StartTicks(_record.Pid) == _record.StartTicks;

    private async Task WatchAsync(string recordPath, CancellationToken ct)
    {
        try
        {
            // Real time on purpose: the process ends when it ends, whatever clock the agent runs on.
            while (IsAlive)
            {
                await Task.Delay(s_poll, ct);
            }
            ProcessRecord.Delete(recordPath);
            _exited.TrySetResult(-1);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Signals the recorded process, if it is still that process.</summary>
    internal static void KillIfSame(ProcessRecord record, int signal)
    {
        if (ProcStat.StartTicks(record.Pid) == record.StartTicks)
        {
            _ = Kill(record.Pid, signal);
        }
    }

    public async Task StopAsync(TimeSpan grace, CancellationToken ct)
    {
        if (Exited.IsCompleted || !IsAlive)
        {
            return;
        }
        KillIfSame(_record, Sigterm);
        // A stopped process acts on SIGTERM only once continued.
        KillIfSame(_record, Sigcont);
        await Task.WhenAny(Exited, Task.Delay(grace, _time, ct));
        if (!Exited.IsCompleted)
        {
            KillIfSame(_record, Sigkill);
            await Exited.WaitAsync(TimeSpan.FromSeconds(10), ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!Exited.IsCompleted && !_options.KeepReplicasOnExit)
        {
            KillIfSame(_record, Sigkill);
        }
        await _cts.CancelAsync();
        await Task.WhenAll(_watch, _logs).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _cts.Dispose();
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>What the process runtime records of a replica process, in <c>replicas/&lt;id&gt;.process</c>.</summary>
internal sealed record ProcessRecord(int Pid, long StartTicks, int Port, long Generation, string Image)
{
    public const string Extension = ".process";

    public static void Write(string path, ProcessRecord record)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, string.Create(CultureInfo.InvariantCulture, $"{record.Pid} {record.StartTicks} {record.Port} {record.Generation}\n{record.Image}\n"));
        File.Move(temp, path, overwrite: true);
    }

    public static ProcessRecord? Read(string path)
    {
        try
        {
            var lines = File.ReadAllLines(path);
            var numbers = lines[0].Split(' ');
            return new ProcessRecord(
                int.Parse(numbers[0], CultureInfo.InvariantCulture), long.Parse(numbers[1], CultureInfo.InvariantCulture),
                int.Parse(numbers[2], CultureInfo.InvariantCulture), long.Parse(numbers[3], CultureInfo.InvariantCulture), lines[1]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or OverflowException)
        {
            return null;
        }
    }

    public static void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>Reads <c>/proc/&lt;pid&gt;/stat</c>.</summary>
internal static class ProcStat
{
    /// <summary>The process's start time (clock ticks after boot), or null when there is no such live process.</summary>
    public static long? StartTicks(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // Fields after the command (which may hold spaces and parentheses): state is field 3, starttime 22.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (fields[0] is "Z" or "X")
            {
                return null;
            }
            return long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}

/// <summary>A replica's log file, written by the replica itself (appending); the agent rotates it by copy and truncate.</summary>
internal static class ReplicaLog
{
    /// <summary>Appends a line; the log is created 0600 (an older agent's is made so), as the replica then appends to it.</summary>
    public static void Append(string path, string line)
    {
        try
        {
            PrivateFiles.CreateDirectory(Path.GetDirectoryName(path)!);
            PrivateFiles.Restrict(path);
            using var stream = PrivateFiles.OpenAppend(path);
            stream.Write(System.Text.Encoding.UTF8.GetBytes(line + "\n"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A full disk must not keep the replica from starting.
        }
    }

    /// <summary>When the log passed its limit: copied to <c>.log.1</c> (replacing the older one) and truncated.</summary>
    public static void RotateIfLarger(string path, long maxBytes)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length <= Math.Max(4096, maxBytes))
            {
                return;
            }
            File.Copy(path, path + ".1", overwrite: true);
            PrivateFiles.Restrict(path + ".1");
            // The replica appends (O_APPEND): after the truncation it goes on at the new end.
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            stream.SetLength(0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// What the replica wrote since the agent last started it (after the last <c>--- shoal:</c> line),
    /// from the last <paramref name="maxBytes"/> of its log; null when the log cannot be read.
    /// </summary>
    public static string? SinceLastStart(string path, int maxBytes = 8192)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var take = (int)Math.Min(stream.Length, maxBytes);
            stream.Seek(-take, SeekOrigin.End);
            var buffer = new byte[take];
            stream.ReadExactly(buffer);
            var text = System.Text.Encoding.UTF8.GetString(buffer);
            var last = text.LastIndexOf("\n" + Marker, StringComparison.Ordinal);
            var marker = last >= 0 ? last + 1 : text.StartsWith(Marker, StringComparison.Ordinal) ? 0 : -1;
            if (marker >= 0)
            {
                var end = text.IndexOf('\n', marker);
                text = end < 0 ? "" : text[(end + 1)..];
            }
            return text;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // How the agent's own lines in a replica's log begin.
    private const string Marker = "--- shoal:";

    /// <summary>Checks the log's size every <see cref="ProcessRuntimeOptions.LogCheckInterval"/> until the replica ends.</summary>
    public static async Task WatchAsync(string path, ProcessRuntimeOptions options, TimeProvider time, Task exited, CancellationToken ct)
    {
        try
        {
            while (!exited.IsCompleted)
            {
                await Task.WhenAny(exited, Task.Delay(options.LogCheckInterval, time, ct));
                ct.ThrowIfCancellationRequested();
                RotateIfLarger(path, options.MaxLogBytes);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
