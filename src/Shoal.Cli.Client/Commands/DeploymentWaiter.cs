using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>How a wait for a cluster's replicas ended, with the last status seen (null if none arrived).</summary>
public sealed record WaitOutcome(bool Ready, ClusterStatusDto? Last);

/// <summary>Polls a cluster's status until every desired replica is ready or the time is up.</summary>
public static class DeploymentWaiter
{
    /// <summary>
    /// For this long after a wait starts, status is asked for every <see cref="FastInterval"/> instead
    /// of the (longer) interval given: a replica ready a few hundred milliseconds after a deploy is
    /// seen then, not at the next half-second poll (deploy to ready through the CLI, docs/benchmarks.md).
    /// </summary>
    public static readonly TimeSpan FastPeriod = TimeSpan.FromSeconds(5);

    /// <summary>The poll interval during <see cref="FastPeriod"/>.</summary>
    public static readonly TimeSpan FastInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>How long to wait before the next poll, <paramref name="elapsed"/> into a wait polling every <paramref name="interval"/>.</summary>
    public static TimeSpan NextDelay(TimeSpan elapsed, TimeSpan interval) =>
        elapsed < FastPeriod && interval > FastInterval ? FastInterval : interval;

    public static bool IsReady(ClusterStatusDto status) => Views.CountReady(status) >= status.Cluster.Replicas;

    public static async Task<WaitOutcome> WaitAsync(
        Func<CancellationToken, Task<ClusterStatusDto>> poll,
        TimeSpan timeout,
        TimeSpan interval,
        TimeProvider time,
        Action<ClusterStatusDto>? onUpdate,
        CancellationToken ct)
    {
        // A cluster that gave up (failed) will not become ready: stop waiting at once.
        var (ready, last) = await PollAsync<bool>(poll, s => IsReady(s) ? true : s.Cluster.Failure is not null ? false : null, timeout, interval, time, onUpdate, ct);
        return new WaitOutcome(ready ?? false, last);
    }

    /// <summary>
    /// Polls until <paramref name="outcome"/> gives a result or the time is up (then null), with the
    /// last status seen. A server that stops answering after a first status (a restart) is asked again
    /// until the deadline.
    /// </summary>
    public static async Task<(T? Result, ClusterStatusDto? Last)> PollAsync<T>(
        Func<CancellationToken, Task<ClusterStatusDto>> poll,
        Func<ClusterStatusDto, T?> outcome,
        TimeSpan timeout,
        TimeSpan interval,
        TimeProvider time,
        Action<ClusterStatusDto>? onUpdate,
        CancellationToken ct)
        where T : struct
    {
        ArgumentNullException.ThrowIfNull(poll);
        ArgumentNullException.ThrowIfNull(outcome);
        ArgumentNullException.ThrowIfNull(time);
        var start = time.GetUtcNow();
        var deadline = start + timeout;
        ClusterStatusDto? last = null;
        while (true)
        {
            try
            {
                last = await poll(ct);
                onUpdate?.Invoke(last);
                if (outcome(last) is { } result)
                {
                    return (result, last);
                }
            }
            catch (ShoalServerUnreachableException) when (last is not null && time.GetUtcNow() < deadline)
            {
                // The server went away after answering once (a restart?): keep asking until the deadline.
            }

            if (time.GetUtcNow() >= deadline)
            {
                return (null, last);
            }

            await Task.Delay(NextDelay(time.GetUtcNow() - start, interval), time, ct);
        }
    }

    /// <summary>One line per replica that is not ready: "r-1: pending (no node with a free rtx-4090)".</summary>
    public static IReadOnlyList<string> DescribePending(ClusterStatusDto status)
    {
        var lines = status.Replicas
            .Where(r => r.State != ReplicaState.Ready)
            .Select(r => $"{r.Id}: {r.State.ToWire()}{(r.NodeName ?? r.Node) switch { null => "", var n => $" on {n}" }}{(r.Reason is null ? "" : $" ({r.Reason})")}")
            .ToList();
        var missing = status.Cluster.Replicas - status.Replicas.Length;
        if (missing > 0)
        {
            lines.Add($"{missing} replica(s) not created yet");
        }

        return lines;
    }
}
