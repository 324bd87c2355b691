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
        var deadline = time.GetUtcNow() + timeout;
        ClusterStatusDto? last = null;
        while (true)
        {
            try
            {
                last = await poll(ct);
                onUpdate?.Invoke(last);
                if (IsReady(last))
                {
                    return new WaitOutcome(true, last);
                }
            }
            catch (ShoalServerUnreachableException) when (last is not null && time.GetUtcNow() < deadline)
            {
                // The server went away after accepting the deploy (restart?): keep asking until the deadline.
            }

            if (time.GetUtcNow() >= deadline)
            {
                return new WaitOutcome(false, last);
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
