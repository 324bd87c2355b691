using System.Diagnostics;
using System.Net.Sockets;

namespace Shoal.Testing;

/// <summary>
/// A real, throw-away <c>redis-server</c> for tests, on 127.0.0.1 and a free port, without
/// persistence. <see cref="KillAsync"/> stops it abruptly (a Redis outage), <see cref="PauseAsync"/> makes it hang; <see cref="RestartAsync"/>
/// brings one back on the same port. Dispose stops it.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private Process? _process;

    private RedisServer(int port) => Port = port;

    public int Port { get; }

    /// <summary>The StackExchange.Redis configuration string of this server.</summary>
    public string Configuration => $"127.0.0.1:{Port}";

    public bool Running => _process is { HasExited: false };

    /// <summary>The <c>redis-server</c> binary: <c>$SHOAL_REDIS_SERVER</c>, else <c>PATH</c>, else <c>/usr/bin</c>; null if none.</summary>
    public static string? FindBinary()
    {
        if (Environment.GetEnvironmentVariable("SHOAL_REDIS_SERVER") is { Length: > 0 } fromEnv && File.Exists(fromEnv)) return fromEnv;
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Append("/usr/bin").Append("/usr/local/bin");
        return dirs.Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);
    }

    public static async Task<RedisServer> StartAsync(CancellationToken ct = default)
    {
        var server = new RedisServer(FreePort.Next());
        await server.RestartAsync(ct);
        return server;
    }

    /// <summary>Starts the server (again) on its port and waits until it takes connections.</summary>
    public async Task RestartAsync(CancellationToken ct = default)
    {
        if (Running) return;
        var binary = FindBinary() ?? throw new InvalidOperationException(
            "redis-server was not found on PATH or in /usr/bin. Run scripts/test.sh, which installs Debian's redis-server (as root), or set SHOAL_REDIS_SERVER.");
        var info = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning" })
        {
            info.ArgumentList.Add(arg);
        }
        _process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        _process.OutputDataReceived += static (_, _) => { };
        _process.ErrorDataReceived += static (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (_process.HasExited) throw new InvalidOperationException($"redis-server exited with {_process.ExitCode} on port {Port}");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", Port, ct);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50, ct);
            }
        }
    }

    /// <summary>Kills the server at once (SIGKILL): clients see the connection drop, as in an outage.</summary>
    public async Task KillAsync()
    {
        if (_process is not { } process) return;
        if (!process.HasExited) process.Kill();
        await process.WaitForExitAsync();
        process.Dispose();
        _process = null;
    }

    /// <summary>Stops the server with SIGSTOP: connections stay open but nothing is answered (a hung or very slow Redis) until <see cref="ResumeAsync"/>.</summary>
    public Task PauseAsync() => SignalAsync("-STOP");

    /// <summary>Lets a paused server run again (SIGCONT): it answers what was sent meanwhile.</summary>
    public Task ResumeAsync() => SignalAsync("-CONT");

    private async Task SignalAsync(string signal)
    {
        if (_process is not { HasExited: false } process) throw new InvalidOperationException("redis-server is not running");
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { signal, process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("kill did not start");
        await kill.WaitForExitAsync();
        if (kill.ExitCode != 0) throw new InvalidOperationException($"kill {signal} exited with {kill.ExitCode}");
    }

    public ValueTask DisposeAsync() => new(KillAsync());
}
