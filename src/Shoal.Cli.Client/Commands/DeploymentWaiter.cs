using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>How a wait for a cluster's replicas ended, with the last status seen (null if none arrived).</summary>
public sealed record WaitOutcome(bool Ready, ClusterStatusDto? Last);

/// <summary>Polls a cluster's status until every desired replica is ready or the time is up.</summary>
public static class DeploymentWaiter
{
    public static bool IsReady(ClusterStatusDto status) => Views.CountReady(status) >= status.Cluster.Replicas;

    public static async Task<WaitOutcome> WaitAsync(
        Func<CancellationToken, Task<ClusterStatusDto>> poll,
        TimeSpan timeout,
        TimeSpan interval,
        TimeProvider time,
        Action<ClusterStatusDto>? onUpdate,
        CancellationToken ct)
    {
        var (ready, last) = await PollAsync<bool>(poll, s => IsReady(s) ? true : null, timeout, interval, time, onUpdate, ct);
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
        var deadline = time.GetUtcNow() + timeout;
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

            await Task.Delay(interval, time, ct);
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
