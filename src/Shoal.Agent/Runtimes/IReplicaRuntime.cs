using Shoal.Contracts;

namespace Shoal.Agent.Runtimes;

/// <summary>A way to run replicas on this node (<c>process</c>, <c>docker</c>).</summary>
public interface IReplicaRuntime
{
    /// <summary>Name reported in hello, such as <c>process</c>.</summary>
    string Name { get; }

    /// <summary>Images this runtime is known to run (reported in hello); may be empty.</summary>
    IReadOnlyCollection<string> Images { get; }

    bool CanRun(string image);

    /// <summary>Why <see cref="CanRun"/> is false for this image, for the replica's reason.</summary>
    string DescribeRejection(string image);

    /// <summary>Starts one instance of the replica.</summary>
    /// <exception cref="ReplicaStartException">It could not be started.</exception>
    Task<IReplicaInstance> StartAsync(Assignment assignment, CancellationToken ct);

    /// <summary>Whether replicas go through a pull phase (<see cref="PrepareAsync"/>) before they start.</summary>
    bool PullsImages => false;

    /// <summary>Whether replicas keep running when the agent exits, to be re-adopted when it returns.</summary>
    bool KeepsReplicasOnAgentExit => false;

    /// <summary>
    /// Whether replicas an earlier agent left running (on purpose, or by dying) are re-adopted by
    /// <see cref="StartAsync"/>, and those no longer assigned removed by <see cref="RemoveOrphansAsync"/>.
    /// </summary>
    bool AdoptsReplicas => KeepsReplicasOnAgentExit;

    /// <summary>
    /// Makes the image present (pulling it, reporting 0-100 to <paramref name="progress"/>) and
    /// returns the exact image to run (digest or image id), or null when the runtime has no such notion.
    /// </summary>
    /// <exception cref="ReplicaStartException">The image could not be had (no such image or tag, access denied…).</exception>
    Task<string?> PrepareAsync(Assignment assignment, IProgress<double> progress, CancellationToken ct) => Task.FromResult<string?>(null);

    /// <summary>Removes what this runtime left running for replicas not in <paramref name="keep"/> (after an agent restart).</summary>
    Task RemoveOrphansAsync(IReadOnlySet<string> keep, CancellationToken ct) => Task.CompletedTask;

    /// <summary>Streams a replica's output to <paramref name="write"/>; returns at its end unless <paramref name="follow"/>.</summary>
    /// <exception cref="IOException">The replica has no output here.</exception>
    Task StreamLogsAsync(string replicaId, bool follow, int? tail, Func<string, Task> write, CancellationToken ct) =>
        throw new IOException($"the {Name} runtime does not keep logs");
}

/// <summary>One running instance of a replica.</summary>
public interface IReplicaInstance : IAsyncDisposable
{
    /// <summary>Loopback port where the replica answers.</summary>
    int HostPort { get; }

    /// <summary>Completes with the exit code when the instance ends, for whatever reason.</summary>
    Task<int> Exited { get; }

    /// <summary>Why the instance ended, beyond its exit code (such as an OOM kill), once it has; null when nothing more is known.</summary>
    string? ExitReason => null;

    /// <summary>Asks the instance to stop, waits up to <paramref name="grace"/>, then kills it and everything it started.</summary>
    Task StopAsync(TimeSpan grace, CancellationToken ct);
}

/// <summary>A replica could not be started.</summary>
public sealed class ReplicaStartException : Exception
{
    public ReplicaStartException(string message, bool permanent, Exception? innerException = null)
        : base(message, innerException)
    {
        Permanent = permanent;
    }

    public ReplicaStartException() : this("the replica could not be started", permanent: false)
    {
    }

    public ReplicaStartException(string message) : this(message, permanent: false)
    {
    }

    public ReplicaStartException(string message, Exception innerException) : this(message, permanent: false, innerException)
    {
    }

    /// <summary>Retrying cannot help (the image is not allowed here); the replica stays failed.</summary>
    public bool Permanent { get; }
}
