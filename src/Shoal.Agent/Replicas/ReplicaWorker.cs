using Shoal.Agent.Connection;
using Shoal.Agent.Health;
using Shoal.Agent.Runtimes;
using Shoal.Contracts;

namespace Shoal.Agent.Replicas;

/// <summary>
/// Supervises one replica: starts it, probes its health, restarts it with back-off when it
/// exits or stays unhealthy, and stops it on request. Its <see cref="Report"/> is what heartbeats carry.
/// </summary>
internal sealed partial class ReplicaWorker
{
    private readonly Assignment _assignment;
    private readonly IReplicaRuntime? _runtime;
    private readonly string? _rejection;
    private readonly IReplicaProbe _probe;
    private readonly ReplicaManagerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action _onStateChanged;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private ReplicaReport _report;
    private Task _loop = Task.CompletedTask;
    private volatile bool _detach;

    public ReplicaWorker(
        Assignment assignment,
        IReplicaRuntime? runtime,
        string? rejection,
        IReplicaProbe probe,
        ReplicaManagerOptions options,
        TimeProvider time,
        ILogger logger,
        Action onStateChanged)
    {
        _assignment = assignment;
        _runtime = runtime;
        _rejection = rejection;
        _probe = probe;
        _options = options;
        _time = time;
        _logger = logger;
        _onStateChanged = onStateChanged;
        _report = new ReplicaReport { ReplicaId = assignment.ReplicaId, State = ReplicaState.Assigned };
    }

    public string ReplicaId => _assignment.ReplicaId;

    public Assignment Assignment => _assignment;

    /// <summary>The runtime that runs this replica, or null when none can.</summary>
    public IReplicaRuntime? Runtime => _runtime;

    public ReplicaReport Report
    {
        get
        {
            lock (_lock)
            {
                return _report;
            }
        }
    }

    /// <summary>Begins supervising, after <paramref name="after"/> (an earlier instance with the same id stopping).</summary>
    public void Start(Task? after) => _loop = Task.Run(() => RunAsync(after));

    /// <summary>
    /// Stops the replica (grace, then kill) and returns when it is gone; with <paramref name="detach"/>,
    /// stops supervising only and leaves a running instance as it is.
    /// </summary>
    public async Task StopAsync(bool detach = false)
    {
        _detach = detach;
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (Exception ex)
        {
            LogLoopFailed(_assignment.ReplicaId, ex);
        }
        finally
        {
            _stop.Dispose();
        }
    }

    private async Task RunAsync(Task? after)
    {
        if (after is not null)
        {
            await after.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        if (_runtime is null)
        {
            Update(r => r with { State = ReplicaState.Failed, Healthy = false, Reason = _rejection });
            LogRejected(_assignment.ReplicaId, _rejection ?? "");
            return;
        }

        var stop = _stop.Token;
        var backoff = new ExponentialBackoff(_options.RestartBackoffMin, _options.RestartBackoffMax);
        var restarts = 0;
        while (!stop.IsCancellationRequested)
        {
            var assignment = _assignment;
            if (_runtime.PullsImages)
            {
                Update(r => r with
                {
                    State = ReplicaState.Pulling,
                    Healthy = false,
                    Reason = null,
                    Restarts = restarts,
                    PullProgress = 0,
                    ReadyAt = null,
                    Load = null,
                });
                string? digest;
                try
                {
                    var progress = new InlineProgress<double>(p => Update(r => r.State == ReplicaState.Pulling ? r with { PullProgress = p } : r));
                    digest = await _runtime.PrepareAsync(_assignment, progress, stop);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break;
                }
                catch (ReplicaStartException ex) when (ex.Permanent)
                {
                    Update(r => r with { State = ReplicaState.Failed, Reason = ex.Message, PullProgress = null });
                    LogRejected(_assignment.ReplicaId, ex.Message);
                    return;
                }
                catch (Exception ex)
                {
                    if (!await FailAndWaitAsync(backoff, ex is ReplicaStartException ? ex.Message : $"image pull failed: {ex.Message}", ex, stop))
                    {
                        break;
                    }
                    restarts++;
                    continue;
                }
                var pulledAt = _time.GetUtcNow();
                assignment = _assignment with { ImageDigest = digest ?? _assignment.ImageDigest };
                Update(r => r with { PulledAt = r.PulledAt ?? pulledAt, PullProgress = null, ImageDigest = digest ?? r.ImageDigest });
            }

            var startedAt = _time.GetUtcNow();
            var pulls = _runtime.PullsImages;
            Update(r => r with
            {
                State = ReplicaState.Starting,
                Healthy = false,
                Reason = null,
                Restarts = restarts,
                PulledAt = pulls ? r.PulledAt : startedAt,
                StartedAt = startedAt,
                ReadyAt = null,
                Load = null,
            });

            IReplicaInstance instance;
            try
            {
                instance = await _runtime.StartAsync(assignment, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (ReplicaStartException ex) when (ex.Permanent)
            {
                Update(r => r with { State = ReplicaState.Failed, Reason = ex.Message });
                LogRejected(_assignment.ReplicaId, ex.Message);
                return;
            }
            catch (Exception ex)
            {
                if (!await FailAndWaitAsync(backoff, $"start failed: {ex.Message}", ex, stop))
                {
                    break;
                }
                restarts++;
                continue;
            }

            try
            {
                Update(r => r with { HostPort = instance.HostPort });
                using var healthCts = CancellationTokenSource.CreateLinkedTokenSource(stop);
                var unhealthyTooLong = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
                var health = HealthLoopAsync(instance.HostPort, unhealthyTooLong, healthCts.Token);
                var stopped = Task.Delay(Timeout.InfiniteTimeSpan, stop);
                await Task.WhenAny(instance.Exited, stopped, unhealthyTooLong.Task);
                await healthCts.CancelAsync();
                await health.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

                if (stop.IsCancellationRequested && _detach)
                {
                    // The agent exits and this runtime's replicas outlive it: leave it running, to be re-adopted.
                    LogDetached(_assignment.ReplicaId);
                    return;
                }
                if (stop.IsCancellationRequested)
                {
                    Update(r => r with { State = ReplicaState.Draining, Healthy = false });
                    await instance.StopAsync(_options.StopGracePeriod, CancellationToken.None);
                    var code = instance.Exited.IsCompletedSuccessfully ? instance.Exited.Result : (int?)null;
                    Update(r => r with { State = ReplicaState.Stopped, ExitCode = code, Load = null });
                    LogStopped(_assignment.ReplicaId);
                    return;
                }

                // Still running but unhealthy for too long: stopped here, then restarted like a crash.
                string? unhealthyReason = null;
                if (!instance.Exited.IsCompleted && unhealthyTooLong.Task.IsCompleted)
                {
                    unhealthyReason = await unhealthyTooLong.Task;
                    LogUnhealthyRestart(_assignment.ReplicaId, unhealthyReason);
                    await instance.StopAsync(_options.StopGracePeriod, CancellationToken.None);
                }

                var exitCode = await instance.Exited;
                if (stop.IsCancellationRequested)
                {
                    // It ended while the agent was stopping it (or stopping itself): not a crash, nothing to restart.
                    Update(r => r with { State = ReplicaState.Stopped, Healthy = false, ExitCode = exitCode, Load = null });
                    LogStopped(_assignment.ReplicaId);
                    return;
                }
                if (_time.GetUtcNow() - startedAt >= _options.RestartBackoffResetAfter)
                {
                    backoff.Reset();
                }
                var restartIn = backoff.Next();
                // The timer starts before the failure is visible, so observers never race it.
                var restartWait = _time.TryDelayAsync(restartIn, stop);
                Update(r => r with
                {
                    // A health restart stays "unhealthy" (that is what it is); an exit is a failure.
                    State = unhealthyReason is null ? ReplicaState.Failed : ReplicaState.Unhealthy,
                    Healthy = false,
                    ExitCode = exitCode,
                    Load = null,
                    Reason = $"{unhealthyReason ?? instance.ExitReason ?? $"exited with code {exitCode}"}; restarting in {restartIn.TotalSeconds:0.#} s",
                });
                LogExited(_assignment.ReplicaId, exitCode, restartIn);
                if (!await restartWait)
                {
                    Update(r => r with { State = ReplicaState.Stopped });
                    return;
                }
                restarts++;
            }
            finally
            {
                await instance.DisposeAsync();
            }
        }
        Update(r => r with { State = ReplicaState.Stopped, Healthy = false });
    }

    // Shows the failure, then waits out the back-off; false when stopped meanwhile.
    private async Task<bool> FailAndWaitAsync(ExponentialBackoff backoff, string reason, Exception ex, CancellationToken stop)
    {
        var delay = backoff.Next();
        // The timer starts before the failure is visible, so observers never race it.
        var wait = _time.TryDelayAsync(delay, stop);
        Update(r => r with { State = ReplicaState.Failed, Healthy = false, PullProgress = null, Reason = $"{reason}; retrying in {delay.TotalSeconds:0.#} s" });
        if (ex is ReplicaStartException)
        {
            // An expected failure (no such image, engine refused): its message says it all.
            LogStartFailed(_assignment.ReplicaId, reason, delay);
        }
        else
        {
            LogStartFailed(_assignment.ReplicaId, delay, ex);
        }
        return await wait;
    }

    /// <summary>An <see cref="IProgress{T}"/> that runs its handler on the reporting thread.</summary>
    private sealed class InlineProgress<T>(Action<T> handler) : IProgress<T>
    {
        public void Report(T value) => handler(value);
    }

    /// <summary>
    /// Probes until cancelled: ready after the success threshold, unhealthy after the failure
    /// threshold; completes <paramref name="unhealthyTooLong"/> (with the reason) once the replica
    /// has been unhealthy for <see cref="ReplicaManagerOptions.UnhealthyRestartAfter"/>.
    /// </summary>
    private async Task HealthLoopAsync(int port, TaskCompletionSource<string> unhealthyTooLong, CancellationToken ct)
    {
        var spec = _assignment.Health;
        var successes = 0;
        var failures = 0;
        DateTimeOffset? unhealthySince = null;
        // The replica's model list is read once it is ready (a few tries: it may not serve it at once).
        var modelTries = 0;
        var interval = TimeSpan.FromMilliseconds(Math.Max(10, spec.IntervalMs));
        var timeout = TimeSpan.FromMilliseconds(Math.Max(1, spec.TimeoutMs));
        if (spec.InitialDelayMs > 0)
        {
            // A slow model load: no probe until it is due; the replica stays "starting" (never unhealthy) meanwhile.
            // The timer starts before the reason is visible, so observers never race it.
            var initialDelay = Task.Delay(TimeSpan.FromMilliseconds(spec.InitialDelayMs), _time, ct);
            Update(r => r with { Reason = $"first health probe after the initial delay of {spec.InitialDelayMs / 1000.0:0.#} s" });
            await initialDelay;
        }
        while (!ct.IsCancellationRequested)
        {
            var ok = await _probe.ProbeAsync(port, spec, ct);
            ct.ThrowIfCancellationRequested();
            var state = ReplicaState.Starting;
            Update(r =>
            {
                if (ok)
                {
                    failures = 0;
                    successes++;
                    if (r.State is ReplicaState.Starting or ReplicaState.Unhealthy && successes >= Math.Max(1, spec.SuccessThreshold))
                    {
                        r = r with { State = ReplicaState.Ready, Healthy = true, Reason = null, ReadyAt = r.ReadyAt ?? _time.GetUtcNow() };
                    }
                }
                else
                {
                    successes = 0;
                    failures++;
                    if (r.State == ReplicaState.Ready && failures >= Math.Max(1, spec.FailureThreshold))
                    {
                        r = r with { State = ReplicaState.Unhealthy, Healthy = false, Reason = $"health check {spec.Path} failed {failures} times in a row" };
                    }
                }
                state = r.State;
                return r;
            });

            if (state != ReplicaState.Unhealthy)
            {
                unhealthySince = null;
            }
            else
            {
                var now = _time.GetUtcNow();
                unhealthySince ??= now;
                if (!ok && now - unhealthySince.Value >= _options.UnhealthyRestartAfter)
                {
                    unhealthyTooLong.TrySetResult($"health check {spec.Path} failing for {(now - unhealthySince.Value).TotalSeconds:0.#} s");
                    return;
                }
            }

            if (state is ReplicaState.Ready or ReplicaState.Unhealthy)
            {
                var load = await _probe.ScrapeLoadAsync(port, timeout, ct);
                lock (_lock)
                {
                    if (_report.State is ReplicaState.Ready or ReplicaState.Unhealthy)
                    {
                        _report = _report with { Load = load };
                    }
                }
                if (state == ReplicaState.Ready && modelTries < MaxModelTries)
                {
                    modelTries++;
                    if (await _probe.ListModelsAsync(port, timeout, ct) is { } models)
                    {
                        modelTries = MaxModelTries;
                        Update(r => r with { Models = models });
                    }
                }
            }
            await Task.Delay(state == ReplicaState.Starting ? _options.StartingProbeInterval : interval, _time, ct);
        }
    }

    /// <summary>Reads of a ready replica's <c>/v1/models</c> before giving up on it (a replica that serves none).</summary>
    private const int MaxModelTries = 3;

    // Applies a change; state, health, port, restarts or models changing is worth an immediate heartbeat.
    private void Update(Func<ReplicaReport, ReplicaReport> change)
    {
        bool notify;
        ReplicaReport before, after;
        lock (_lock)
        {
            before = _report;
            after = change(before);
            _report = after;
            notify = before.State != after.State || before.Healthy != after.Healthy
                || before.HostPort != after.HostPort || before.Restarts != after.Restarts || !ReferenceEquals(before.Models, after.Models);
        }
        if (notify)
        {
            if (before.State != after.State)
            {
                LogStateChanged(_assignment.ReplicaId, before.State, after.State);
            }
            _onStateChanged();
        }
    }
}
