using System.Text.Json.Serialization;

namespace Shoal.Contracts;

/// <summary>
/// A message on the agent WebSocket (<c>/v1/agent/connect</c>), one JSON text frame each,
/// with a <c>type</c> discriminator. Agents send hello, heartbeat and ack; the server sends
/// welcome and assignments.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type", UnknownDerivedTypeHandling = JsonUnknownDerivedTypeHandling.FailSerialization)]
[JsonDerivedType(typeof(HelloMessage), "hello")]
[JsonDerivedType(typeof(HeartbeatMessage), "heartbeat")]
[JsonDerivedType(typeof(AckMessage), "ack")]
[JsonDerivedType(typeof(WelcomeMessage), "welcome")]
[JsonDerivedType(typeof(AssignmentsMessage), "assignments")]
[JsonDerivedType(typeof(EdgesMessage), "edges")]
[JsonDerivedType(typeof(LogsRequestMessage), "logsRequest")]
[JsonDerivedType(typeof(LogsCancelMessage), "logsCancel")]
[JsonDerivedType(typeof(LogsDataMessage), "logsData")]
public abstract record AgentMessage;

/// <summary>Headers and limits of the agent connection.</summary>
public static class AgentProtocol
{
    public const string ConnectPath = "/v1/agent/connect";
    /// <summary>Header carrying a provisioning token, for a node that registers.</summary>
    public const string ProvisioningTokenHeader = "X-Shoal-Provisioning-Token";
    /// <summary>Header carrying the node id, for a returning node.</summary>
    public const string NodeIdHeader = "X-Shoal-Node-Id";
    /// <summary>Header carrying the node secret, for a returning node.</summary>
    public const string NodeSecretHeader = "X-Shoal-Node-Secret";
    /// <summary>Header with the name a registering node asks for (its host name by default).</summary>
    public const string NodeNameHeader = "X-Shoal-Node-Name";
    /// <summary>Largest message either side accepts; a larger one closes the connection.</summary>
    public const int MaxMessageBytes = 1024 * 1024;
    public const int DefaultHeartbeatIntervalMs = 2000;
    /// <summary>
    /// Close description of an agent that stops on purpose (SIGTERM, Ctrl-C, an upgrade), sent with
    /// a normal closure: the control plane does not count such a goodbye against the node's reliability.
    /// </summary>
    public const string AgentStoppingCloseDescription = "agent stopping";
}

/// <summary>First message from the agent on every connection.</summary>
public sealed record HelloMessage : AgentMessage
{
    public required string NodeName { get; init; }
    public required NodeHardware Hardware { get; init; }
    public string[] Runtimes { get; init; } = [];
    public string[] Images { get; init; } = [];
    /// <summary>
    /// The images this node's process runtime runs as local commands (<c>shoal/sim</c> and those its
    /// operator listed); their clusters' env and args are held to a stricter rule at deploy time.
    /// </summary>
    public string[] ProcessImages { get; init; } = [];
    /// <summary>Env names the node's operator allowed for process images beyond that rule (<c>shoal agent --allow-env</c>).</summary>
    public string[] AllowedEnv { get; init; } = [];
    /// <summary>The address the edge uses to reach this node's replicas (direct mode).</summary>
    public string Address { get; init; } = "127.0.0.1";
    /// <summary>True when edges must reach this node's replicas over its tunnels (the node has no reachable address).</summary>
    public bool Tunnel { get; init; }
    public string? AgentVersion { get; init; }
    /// <summary>The last revision the agent converged to before this connection.</summary>
    public long AppliedRevision { get; init; }
    public ReplicaReport[] Replicas { get; init; } = [];
}

/// <summary>Periodic (and on-change) report of the replicas an agent runs.</summary>
public sealed record HeartbeatMessage : AgentMessage
{
    public long AppliedRevision { get; init; }
    /// <summary>The images on the node, when they changed since the last hello or heartbeat; null otherwise.</summary>
    public string[]? Images { get; init; }
    public ReplicaReport[] Replicas { get; init; } = [];
}

/// <summary>The agent has taken in an assignment set and is converging to it.</summary>
public sealed record AckMessage : AgentMessage
{
    public long Revision { get; init; }
}

/// <summary>Server's answer to hello; carries the node secret only when the node just registered.</summary>
public sealed record WelcomeMessage : AgentMessage
{
    public required string NodeId { get; init; }
    public string? NodeSecret { get; init; }
    public int HeartbeatIntervalMs { get; init; } = AgentProtocol.DefaultHeartbeatIntervalMs;
    /// <summary>Base URLs of the edges this node should keep tunnels open to.</summary>
    public string[] Edges { get; init; } = [];
}

/// <summary>The set of edges changed: keep tunnels open to exactly these (base URLs).</summary>
public sealed record EdgesMessage : AgentMessage
{
    public string[] Edges { get; init; } = [];
}

/// <summary>The full set of replicas a node should run. Replaces any earlier set.</summary>
public sealed record AssignmentsMessage : AgentMessage
{
    public long Revision { get; init; }
    public Assignment[] Replicas { get; init; } = [];
}

/// <summary>One replica the node should run.</summary>
public sealed record Assignment
{
    public required string ReplicaId { get; init; }
    public required string Cluster { get; init; }
    public long Generation { get; init; }
    public required string Image { get; init; }
    public required string Gpu { get; init; }
    public int[] GpuIndexes { get; init; } = [];
    /// <summary>The port the workload listens on inside its container.</summary>
    public int Port { get; init; } = 8000;
    public Dictionary<string, string> Env { get; init; } = [];
    public string[] Args { get; init; } = [];
    public HealthCheckSpec Health { get; init; } = new();
    /// <summary>
    /// The image the cluster is pinned to (a repo digest <c>repo@sha256:…</c> or a local image id
    /// <c>sha256:…</c>), once a node has resolved it; null until then.
    /// </summary>
    public string? ImageDigest { get; init; }
    /// <summary>Credentials for pulling the image from a private registry; sent only to nodes that run the cluster.</summary>
    public RegistryCredentials? RegistryAuth { get; init; }
}

/// <summary>Credentials of a private registry, for pulling one cluster's image.</summary>
public sealed record RegistryCredentials
{
    /// <summary>Registry host, such as <c>ghcr.io</c>; default: the image reference's host.</summary>
    public string? Server { get; init; }
    public required string Username { get; init; }
    public required string Password { get; init; }

    // A record prints every property; the password must never reach a log line that way.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Server = ").Append(Server).Append(", Username = ").Append(Username).Append(", Password = ***");
        return true;
    }
}

/// <summary>Server to agent: stream a replica's output with <see cref="LogsDataMessage"/> frames.</summary>
public sealed record LogsRequestMessage : AgentMessage
{
    public required string RequestId { get; init; }
    public required string ReplicaId { get; init; }
    /// <summary>Keep streaming new output until cancelled.</summary>
    public bool Follow { get; init; }
    /// <summary>Lines from the end to start with; null for all.</summary>
    public int? Tail { get; init; }
}

/// <summary>Server to agent: stop a logs stream (the client went away).</summary>
public sealed record LogsCancelMessage : AgentMessage
{
    public required string RequestId { get; init; }
}

/// <summary>Agent to server: a piece of a replica's output, or the end of the stream.</summary>
public sealed record LogsDataMessage : AgentMessage
{
    /// <summary>Largest <see cref="Data"/> an agent sends in one frame, in characters.</summary>
    public const int MaxChunkChars = 32 * 1024;

    public required string RequestId { get; init; }
    public string Data { get; init; } = "";
    /// <summary>The stream is over (the replica is gone, or not followed and all sent).</summary>
    public bool End { get; init; }
    /// <summary>Why the stream could not be served, when it could not.</summary>
    public string? Error { get; init; }
}

/// <summary>What an agent observes of one replica.</summary>
public sealed record ReplicaReport
{
    public required string ReplicaId { get; init; }
    public ReplicaState State { get; init; }
    public string? Reason { get; init; }
    public bool Healthy { get; init; }
    /// <summary>Local port where the replica answers (on the node's address).</summary>
    public int? HostPort { get; init; }
    public int Restarts { get; init; }
    public int? ExitCode { get; init; }
    public DateTimeOffset? PulledAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? ReadyAt { get; init; }
    public ReplicaLoad? Load { get; init; }
    /// <summary>Image pull progress, 0-100, while the replica is pulling.</summary>
    public double? PullProgress { get; init; }
    /// <summary>The exact image the replica runs (repo digest, or image id for a local image).</summary>
    public string? ImageDigest { get; init; }
    /// <summary>
    /// Model ids the replica lists on <c>/v1/models</c>, read once after it became ready (the gateway's
    /// model routing for clusters that declare none); null while unknown or when it lists none.
    /// </summary>
    public string[]? Models { get; init; }
}

/// <summary>Load read from the replica's Prometheus metrics (vLLM names).</summary>
public sealed record ReplicaLoad
{
    public double Running { get; init; }
    public double Waiting { get; init; }
}

/// <summary>Hardware a node reports.</summary>
public sealed record NodeHardware
{
    public GpuInfo[] Gpus { get; init; } = [];
    public int CpuCores { get; init; }
    public long MemoryMiB { get; init; }
    public long DiskFreeMiB { get; init; }
    public string? Os { get; init; }
    public string? Hostname { get; init; }
}

/// <summary>One GPU of a node.</summary>
public sealed record GpuInfo
{
    public int Index { get; init; }
    public required string Uuid { get; init; }
    public required string Name { get; init; }
    /// <summary>Canonical type slug, such as <c>rtx-4090</c>.</summary>
    public required string Type { get; init; }
    public long MemoryMiB { get; init; }
    public bool Simulated { get; init; }
}
