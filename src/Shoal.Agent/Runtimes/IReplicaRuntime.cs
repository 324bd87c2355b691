using Shoal.Contracts;

namespace Shoal.Agent.Runtimes;

/// <summary>A way to run replicas on this node (<c>process</c>; <c>docker</c> later).</summary>
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
}

/// <summary>One running instance of a replica.</summary>
public interface IReplicaInstance : IAsyncDisposable
{
    /// <summary>Loopback port where the replica answers.</summary>
    int HostPort { get; }

    /// <summary>Completes with the exit code when the instance ends, for whatever reason.</summary>
    Task<int> Exited { get; }

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
