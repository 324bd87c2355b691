using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Shoal.Contracts;

namespace Shoal.Agent.Runtimes;

/// <summary>Settings of <see cref="ProcessRuntime"/>.</summary>
public sealed class ProcessRuntimeOptions
{
    /// <summary>The built-in image that runs the simulator.</summary>
    public const string SimImage = "shoal/sim";

    /// <summary>Whether the runtime runs anything at all. Default: false.</summary>
    public bool Enabled { get; set; }

    /// <summary>Image → command line, on top of the built-in <see cref="SimImage"/>. Default: empty.</summary>
    public IReadOnlyDictionary<string, string> Images { get; set; } = new Dictionary<string, string>();

    /// <summary>Command line for <see cref="SimImage"/>. Default: <see cref="AgentOptions.DefaultSimCommand"/>.</summary>
    public string SimCommand { get; set; } = AgentOptions.DefaultSimCommand;

    /// <summary>Directory under which replica logs (<c>&lt;id&gt;.log</c>) and working directories go.</summary>
    public required string ReplicasDir { get; set; }

    /// <summary>Size at which a replica log is rotated. Default: 10 MiB.</summary>
    public long MaxLogBytes { get; set; } = 10 * 1024 * 1024;
}

/// <summary>
/// Runs allow-listed local commands as replicas: <c>shoal/sim</c> runs <c>shoal sim</c>, other
/// images only when the operator listed them. For dev, tests and benchmarks; disabled by default.
/// </summary>
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

    public bool CanRun(string image) => _options.Enabled && _images.ContainsKey(image);

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

        var port = FreeLoopbackPort();
        var env = ReplicaEnvironment(assignment, port);
        var psi = new ProcessStartInfo(CommandLine.Expand(words[0], env))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = Path.Combine(_options.ReplicasDir, assignment.ReplicaId),
        };
        Directory.CreateDirectory(psi.WorkingDirectory);
        foreach (var word in words.Skip(1).Concat(assignment.Args))
        {
            psi.ArgumentList.Add(CommandLine.Expand(word, env));
        }
        foreach (var (name, value) in env)
        {
            psi.Environment[name] = value;
        }

        var log = new ReplicaLogFile(Path.Combine(_options.ReplicasDir, assignment.ReplicaId + ".log"), _options.MaxLogBytes);
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
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                log.WriteLine(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                log.WriteLine(e.Data);
            }
        };

        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            process.Dispose();
            log.Dispose();
            throw new ReplicaStartException($"cannot run '{psi.FileName}' for image {assignment.Image}: {ex.Message}", permanent: false, ex);
        }
        // Replicas read nothing from the agent; a closed stdin makes that plain.
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        log.WriteLine($"--- shoal: started {psi.FileName} (pid {process.Id}) on port {port.ToString(CultureInfo.InvariantCulture)} at {_time.GetUtcNow():O}");
        LogStarted(assignment.ReplicaId, assignment.Image, process.Id, port);
        return Task.FromResult<IReplicaInstance>(new ProcessReplicaInstance(process, port, exited.Task, log, _time));
    }

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
}

/// <summary>A replica running as a local process.</summary>
public sealed partial class ProcessReplicaInstance : IReplicaInstance
{
    private const int Sigterm = 15;
    private readonly Process _process;
    private readonly ReplicaLogFile _log;
    private readonly TimeProvider _time;

    internal ProcessReplicaInstance(Process process, int port, Task<int> exited, ReplicaLogFile log, TimeProvider time)
    {
        _process = process;
        HostPort = port;
        Exited = exited;
        _log = log;
        _time = time;
        ProcessId = process.Id;
    }

    public int HostPort { get; }

    public Task<int> Exited { get; }

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

    public ValueTask DisposeAsync()
    {
        if (!Exited.IsCompleted)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
        }
        _process.Dispose();
        _log.Dispose();
        return ValueTask.CompletedTask;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
