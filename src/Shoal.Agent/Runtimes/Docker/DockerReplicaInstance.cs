using System.Net;
using Docker.DotNet;
using Docker.DotNet.Models;
using Shoal.Contracts;

namespace Shoal.Agent.Runtimes.Docker;

/// <summary>A replica running as a container. Disposing it leaves the container as it is; stopping removes it.</summary>
public sealed class DockerReplicaInstance : IReplicaInstance
{
    private readonly IDockerClient _client;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _disposed = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string? _exitReason;

    internal DockerReplicaInstance(IDockerClient client, string containerId, int hostPort, ILogger logger)
    {
        _client = client;
        _logger = logger;
        ContainerId = containerId;
        HostPort = hostPort;
    }

    /// <summary>Begins waiting for the container to end; only once it runs (a created container counts as not running).</summary>
    internal DockerReplicaInstance Watch()
    {
        _ = WatchAsync();
        return this;
    }

    public string ContainerId { get; }

    public int HostPort { get; }

    public Task<int> Exited => _exited.Task;

    public string? ExitReason => Volatile.Read(ref _exitReason);

    // Waits for the container to end; a dropped connection to the engine is not an exit, so it waits again.
    private async Task WatchAsync()
    {
        var ct = _disposed.Token;
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var result = await _client.Containers.WaitContainerAsync(ContainerId, ct);
                await RecordExitAsync((int)result.StatusCode, ct);
                return;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (DockerContainerNotFoundException)
            {
                Volatile.Write(ref _exitReason, "container was removed");
                _exited.TrySetResult(-1);
                return;
            }
            catch (DockerApiException ex) when (ex.StatusCode == HttpStatusCode.NotFound)
            {
                Volatile.Write(ref _exitReason, "container was removed");
                _exited.TrySetResult(-1);
                return;
            }
            catch (Exception ex) when (ex is DockerApiException or HttpRequestException or IOException)
            {
                failures++;
                DockerRuntime.LogWaitFailed(_logger, ContainerId, ex.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 200 * failures)), ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task RecordExitAsync(int code, CancellationToken ct)
    {
        string? reason = null;
        try
        {
            var inspect = await _client.Containers.InspectContainerAsync(ContainerId, ct);
            if (inspect.State is { } state)
            {
                code = (int)state.ExitCode;
                if (state.OOMKilled)
                {
                    reason = $"killed: out of memory (OOM), exit code {code}";
                }
                else if (!string.IsNullOrEmpty(state.Error))
                {
                    reason = $"exited with code {code}: {state.Error}";
                }
            }
        }
        catch (Exception ex) when (ex is DockerApiException or HttpRequestException or IOException or OperationCanceledException)
        {
        }
        // What it said last tells most about why it ended (a missing file, a bad flag); the container is still there to ask.
        var output = ExitOutput.Format(await LastOutputAsync(ct));
        if (output.Length > 0) reason = (reason ?? $"exited with code {code}") + output;

        Volatile.Write(ref _exitReason, reason);
        _exited.TrySetResult(code);
    }

    // The container's last lines (stdout and stderr as written); null when the engine cannot say.
    private async Task<string?> LastOutputAsync(CancellationToken ct)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            using var stream = await _client.Containers.GetContainerLogsAsync(ContainerId, new ContainerLogsParameters
            {
                ShowStdout = true,
                ShowStderr = true,
                Tail = ExitOutput.MaxLines.ToString(System.Globalization.CultureInfo.InvariantCulture),
            }, timeout.Token);
            var text = new System.Text.StringBuilder();
            var buffer = new byte[4096];
            while (text.Length < 64 * 1024)
            {
                var read = await stream.ReadOutputAsync(buffer, 0, buffer.Length, timeout.Token);
                if (read.EOF) break;
                text.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, read.Count));
            }
            return text.ToString();
        }
        catch (Exception ex) when (ex is DockerApiException or HttpRequestException or IOException or OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>SIGTERM, up to <paramref name="grace"/>, then SIGKILL; then the container is removed.</summary>
    public async Task StopAsync(TimeSpan grace, CancellationToken ct)
    {
        try
        {
            if (!Exited.IsCompleted)
            {
                await _client.Containers.StopContainerAsync(ContainerId, new ContainerStopParameters
                {
                    WaitBeforeKillSeconds = (uint)Math.Max(0, Math.Ceiling(grace.TotalSeconds)),
                }, ct);
                await ((Task)Exited).WaitAsync(TimeSpan.FromSeconds(10), ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
        catch (DockerContainerNotFoundException)
        {
        }
        catch (DockerApiException ex) when (ex.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.NotModified)
        {
        }
        await RemoveAsync();
    }

    /// <summary>Removes the container (forcefully), ignoring one that is already gone.</summary>
    public async Task RemoveAsync()
    {
        try
        {
            await _client.Containers.RemoveContainerAsync(ContainerId, new ContainerRemoveParameters { Force = true }, CancellationToken.None);
        }
        catch (DockerContainerNotFoundException)
        {
        }
        catch (DockerApiException ex) when (ex.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Conflict)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _disposed.CancelAsync();
        _disposed.Dispose();
    }
}
