namespace Shoal.Agent.Runtimes.Docker;

/// <summary>
/// Labels on every container the agent creates. The agent only ever lists, stops or removes
/// containers that carry <see cref="Managed"/> and its own <see cref="Node"/>.
/// </summary>
public static class DockerLabels
{
    public const string Managed = "io.shoal.managed";
    public const string Node = "io.shoal.node";
    public const string Cluster = "io.shoal.cluster";
    public const string Replica = "io.shoal.replica";
    public const string Generation = "io.shoal.generation";
    /// <summary>The loopback port the replica answers on, so a re-adopted container is reachable.</summary>
    public const string HostPort = "io.shoal.host-port";
    /// <summary>The image reference the cluster asked for (the container runs its digest).</summary>
    public const string Image = "io.shoal.image";
}
