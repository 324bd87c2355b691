namespace Shoal.Contracts;

/// <summary>Health check settings of a cluster's replicas.</summary>
public sealed record HealthCheckSpec
{
    public string Path { get; init; } = "/health";
    public int IntervalMs { get; init; } = 1000;
    public int TimeoutMs { get; init; } = 2000;
    public int FailureThreshold { get; init; } = 3;
    public int SuccessThreshold { get; init; } = 1;
    /// <summary>
    /// How long after a start the first probe waits (a slow model load); the replica is starting,
    /// not unhealthy, meanwhile. Default 0.
    /// </summary>
    public int InitialDelayMs { get; init; }
}

/// <summary>Body of <c>POST /v1/clusters</c>.</summary>
public sealed record CreateClusterRequest
{
    public string? Name { get; init; }
    /// <summary>The project that owns the cluster; default: the caller's project (operator keys: <c>default</c>).</summary>
    public string? Project { get; init; }
    /// <summary>The endpoint answers without an endpoint key (default false: keys of the project are required).</summary>
    public bool? Public { get; init; }
    public string? Image { get; init; }
    public string? Gpu { get; init; }
    public int? GpuCount { get; init; }
    public int? Replicas { get; init; }
    public int? Port { get; init; }
    public Dictionary<string, string>? Env { get; init; }
    /// <summary>Env variables whose values are secret: encrypted at rest, never shown again (<c>***</c>), sent only to nodes running the cluster.</summary>
    public Dictionary<string, string>? SecretEnv { get; init; }
    public string[]? Args { get; init; }
    public HealthCheckSpec? Health { get; init; }
    /// <summary>Credentials for a private registry; kept as a secret (never shown again).</summary>
    public RegistryCredentials? RegistryAuth { get; init; }
    /// <summary>
    /// Labels a node must have to run the replicas (and so receive the cluster's secrets). Null: the
    /// default, <c>trusted</c> when the cluster has secrets (registry credentials), else none; empty: none.
    /// </summary>
    public string[]? NodeLabels { get; init; }
    /// <summary><c>least-outstanding</c> (default) or <c>round-robin</c>.</summary>
    public string? Routing { get; init; }
    /// <summary>How long the edge holds a request while no replica is ready, 0..300 s (default 30).</summary>
    public int? QueueTimeoutSeconds { get; init; }
    /// <summary>
    /// Time-to-first-byte cap of the edge's attempts, 0..3600 s: an attempt without response headers
    /// by then is cut and retried on another replica. Null: the edge's default (none); 0: no cap.
    /// </summary>
    public int? FirstByteTimeoutSeconds { get; init; }
    /// <summary>How long a replica being drained may take to finish its in-flight requests before it is stopped, 0..3600 s (default 30).</summary>
    public int? DrainTimeoutSeconds { get; init; }
    /// <summary>How long a new replica of an update may take to become ready before the update is rolled back, 10..86400 s (default 120).</summary>
    public int? ProgressDeadlineSeconds { get; init; }
    /// <summary>Autoscaling settings; null (default): a fixed replica count.</summary>
    public AutoscaleRequest? Autoscale { get; init; }
    /// <summary>Most requests the edge holds while no replica is ready, 0..100000 (default 1000); beyond: 503 with <c>Retry-After</c>.</summary>
    public int? MaxHeld { get; init; }
    /// <summary>Model names the cluster serves on the gateway's <c>/v1</c> facade; null or empty: what its replicas list on <c>/v1/models</c>.</summary>
    public string[]? Models { get; init; }
    /// <summary>What the cluster charges (per 1M input/output tokens, per GPU-second; each 0..10000 USD); null: nothing.</summary>
    public ClusterPrice? Price { get; init; }
}

/// <summary>
/// Autoscaling settings as a request gives them: on create, the settings (defaults for what is
/// left out); on update, only the fields given change, and <see cref="Off"/> turns autoscaling off.
/// </summary>
public sealed record AutoscaleRequest
{
    /// <summary>Fewest replicas, 0..1000 (default 1); 0 needs <see cref="ScaleToZeroAfterSeconds"/>.</summary>
    public int? Min { get; init; }
    /// <summary>Most replicas, 1..1000; required when autoscaling is turned on.</summary>
    public int? Max { get; init; }
    /// <summary>Target of requests waiting per replica (vLLM's <c>vllm:num_requests_waiting</c>); 0 turns the signal off. Default 2.</summary>
    public double? TargetWaiting { get; init; }
    /// <summary>Target of requests in flight plus held at the edges per replica; 0 (default) turns the signal off.</summary>
    public double? TargetConcurrency { get; init; }
    /// <summary>A scale-down takes the highest recommendation over this many seconds, 0..3600 (default 300).</summary>
    public int? ScaleDownWindowSeconds { get; init; }
    /// <summary>With min 0: seconds without any demand before the last replica stops, 1..86400; 0 (default): never to zero.</summary>
    public int? ScaleToZeroAfterSeconds { get; init; }
    /// <summary>True turns autoscaling off (the replica count stays where it is unless replicas is given).</summary>
    public bool? Off { get; init; }
}

/// <summary>A cluster's autoscaling settings (validated). See docs/autoscaling.md for the formula.</summary>
public sealed record AutoscaleSpec
{
    public const double DefaultTargetWaiting = 2;
    public const int DefaultScaleDownWindowSeconds = 300;

    public int Min { get; init; } = 1;
    public int Max { get; init; } = 1;
    /// <summary>Requests waiting per replica the autoscaler aims at; 0: not used.</summary>
    public double TargetWaiting { get; init; } = DefaultTargetWaiting;
    /// <summary>Requests in flight plus held per replica the autoscaler aims at; 0: not used.</summary>
    public double TargetConcurrency { get; init; }
    public int ScaleDownWindowSeconds { get; init; } = DefaultScaleDownWindowSeconds;
    /// <summary>Idle seconds before scaling to zero (only with <see cref="Min"/> 0); 0: never.</summary>
    public int ScaleToZeroAfterSeconds { get; init; }
}

/// <summary>A cluster's autoscaling as the API shows it: the settings and the last decision.</summary>
public sealed record AutoscaleDto
{
    public required AutoscaleSpec Settings { get; init; }
    /// <summary>The replica count the autoscaler wants now (before it is applied), or null before its first pass.</summary>
    public int? Desired { get; init; }
    /// <summary>Why (for example <c>14 waiting per replica, target 2</c>).</summary>
    public string? Reason { get; init; }
    /// <summary>When it last decided.</summary>
    public DateTimeOffset? DecidedAt { get; init; }
    /// <summary>The last change of the replica count it made, as its event says it.</summary>
    public string? LastChange { get; init; }
    public DateTimeOffset? LastChangeAt { get; init; }
    /// <summary>Requests waiting at replicas plus held at edges now.</summary>
    public double Waiting { get; init; }
    /// <summary>Requests in flight at the edges now.</summary>
    public int InFlight { get; init; }
    /// <summary>Requests held at the edges now.</summary>
    public int Held { get; init; }
}

/// <summary>One part of a cold start over a cluster's recent replicas, in milliseconds.</summary>
public sealed record LatencySummary
{
    public int Count { get; init; }
    public double P50Ms { get; init; }
    public double P90Ms { get; init; }
    public double MaxMs { get; init; }
}

/// <summary>
/// A cold start in four parts over a cluster's recent replicas: waiting for a node (created →
/// placed), image pull (placed → pulled), start until the health check passes (started → ready),
/// warm-up until the first request is served (ready → first response through an edge).
/// </summary>
public sealed record ColdStartDto
{
    public LatencySummary? NodeWait { get; init; }
    public LatencySummary? ImagePull { get; init; }
    public LatencySummary? Start { get; init; }
    public LatencySummary? WarmUp { get; init; }
}

/// <summary>
/// Body of <c>PATCH /v1/clusters/{name}</c>; only the fields given change. A change of what the
/// replicas run (image, env, args, port, health) starts a rolling update to a new generation;
/// the other fields apply at once.
/// </summary>
public sealed record UpdateClusterRequest
{
    public int? Replicas { get; init; }
    /// <summary>Make the endpoint answer without (true) or only with (false) an endpoint key of the project.</summary>
    public bool? Public { get; init; }
    public string? Image { get; init; }
    /// <summary>Env variables to set (added or replaced); the others are kept.</summary>
    public Dictionary<string, string>? Env { get; init; }
    /// <summary>
    /// Secret env variables to set (added or replaced; a plain variable of the same name becomes
    /// secret); the other secret ones are kept without being sent again.
    /// </summary>
    public Dictionary<string, string>? SecretEnv { get; init; }
    /// <summary>Env variables to remove, plain or secret.</summary>
    public string[]? UnsetEnv { get; init; }
    /// <summary>The container's arguments, replacing the current ones (an empty array clears them).</summary>
    public string[]? Args { get; init; }
    public int? Port { get; init; }
    /// <summary>The health check, replacing the current one as a whole.</summary>
    public HealthCheckSpec? Health { get; init; }
    public string? Routing { get; init; }
    public int? QueueTimeoutSeconds { get; init; }
    /// <summary>The first-byte cap in seconds; 0: no cap (there is no way back to the edge's default but 0 or a value).</summary>
    public int? FirstByteTimeoutSeconds { get; init; }
    public int? DrainTimeoutSeconds { get; init; }
    public int? ProgressDeadlineSeconds { get; init; }
    /// <summary>Autoscaling settings to change (only the fields given), or <c>off: true</c> to turn it off.</summary>
    public AutoscaleRequest? Autoscale { get; init; }
    public int? MaxHeld { get; init; }
    /// <summary>Model names for the <c>/v1</c> facade, replacing the current ones; an empty array goes back to what the replicas list.</summary>
    public string[]? Models { get; init; }
    /// <summary>Price parts to set (each given part replaces the current one; 0 makes that part free); the parts not given are kept.</summary>
    public ClusterPrice? Price { get; init; }
}

/// <summary>The <c>state</c> of a <see cref="RolloutDto"/>.</summary>
public static class RolloutStates
{
    /// <summary>Replicas of an older generation are being replaced, one at a time.</summary>
    public const string Progressing = "progressing";
    /// <summary>Every replica runs the current generation.</summary>
    public const string Complete = "complete";
    /// <summary>The last update failed and the cluster went back to the generation before it (the reason says why).</summary>
    public const string RolledBack = "rolled-back";
}

/// <summary>Where a cluster's latest update stands.</summary>
public sealed record RolloutDto
{
    /// <summary>The generation the cluster is converging to.</summary>
    public long Generation { get; init; }
    /// <summary>One of <see cref="RolloutStates"/>.</summary>
    public required string State { get; init; }
    /// <summary>What the update changed, or why it was rolled back.</summary>
    public string? Reason { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Replicas (not draining) that run the current generation.</summary>
    public int UpdatedReplicas { get; init; }
    /// <summary>Replicas (not draining) that still run an older generation or must move (node drained, crash loop).</summary>
    public int OutdatedReplicas { get; init; }
    /// <summary>Replicas out of routing, finishing their in-flight requests before they stop.</summary>
    public int DrainingReplicas { get; init; }
}

/// <summary>A cluster as the API shows it.</summary>
public sealed record ClusterDto
{
    public required string Name { get; init; }
    public string Project { get; init; } = "default";
    /// <summary>The endpoint answers without an endpoint key.</summary>
    public bool Public { get; init; }
    public required string Image { get; init; }
    public required string Gpu { get; init; }
    public int GpuCount { get; init; }
    public int Replicas { get; init; }
    public int ReadyReplicas { get; init; }
    public int Port { get; init; }
    public long Generation { get; init; }
    /// <summary>Plain env variables and their values.</summary>
    public Dictionary<string, string> Env { get; init; } = [];
    /// <summary>Secret env variables; every value is <see cref="SecretValue.Mask"/>, the real one is never shown.</summary>
    public Dictionary<string, string> SecretEnv { get; init; } = [];
    public string[] Args { get; init; } = [];
    public HealthCheckSpec Health { get; init; } = new();
    /// <summary>Labels a node must have to run the replicas (the default applied: <c>trusted</c> for a cluster with secrets).</summary>
    public string[] NodeLabels { get; init; } = [];
    public string Routing { get; init; } = BalancingPolicy.LeastOutstanding;
    public int QueueTimeoutSeconds { get; init; }
    /// <summary>The edge's first-byte cap for the cluster in seconds; null: the edge's default; 0: none.</summary>
    public int? FirstByteTimeoutSeconds { get; init; }
    public int DrainTimeoutSeconds { get; init; }
    public int ProgressDeadlineSeconds { get; init; }
    /// <summary>Most requests the edge holds while no replica is ready.</summary>
    public int MaxHeld { get; init; } = BalancingPolicy.DefaultMaxHeld;
    /// <summary>Model names the cluster serves on the gateway's <c>/v1</c> facade: those declared, else what its ready replicas list.</summary>
    public string[] Models { get; init; } = [];
    /// <summary>True when <see cref="Models"/> was declared (<c>shoal deploy --model</c>); false when it comes from the replicas.</summary>
    public bool ModelsDeclared { get; init; }
    /// <summary>What the cluster charges; null: nothing.</summary>
    public ClusterPrice? Price { get; init; }
    /// <summary>Autoscaling settings and the last decision; null when the replica count is fixed.</summary>
    public AutoscaleDto? Autoscale { get; init; }
    /// <summary>Cold starts of recent replicas in four parts; null when none is known yet.</summary>
    public ColdStartDto? ColdStart { get; init; }
    /// <summary>The latest update (rolling replacement of replicas) and where it stands.</summary>
    public RolloutDto? Rollout { get; init; }
    /// <summary>Why the cluster gave up (its spec failed on every attempt, the last reason included); null unless failed. A failed cluster runs nothing until it is updated.</summary>
    public string? Failure { get; init; }
    /// <summary>When it gave up.</summary>
    public DateTimeOffset? FailedAt { get; init; }
    /// <summary>Replicas replaced for failing before the spec ever worked (attempts), counting toward the cluster giving up.</summary>
    public int FailedAttempts { get; init; }
    public required string Endpoint { get; init; }
    /// <summary>The digest the image is pinned to, once a node resolved it.</summary>
    public string? ImageDigest { get; init; }
    /// <summary>The registry user when pull credentials are set (the password is never shown).</summary>
    public string? RegistryUser { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>How the API and CLI show a secret value.</summary>
public static class SecretValue
{
    /// <summary>Stands for a secret value that is never shown.</summary>
    public const string Mask = "***";
}

/// <summary>One replica in a cluster's status: where it runs and how it got there.</summary>
public sealed record ReplicaDto
{
    public required string Id { get; init; }
    public required string Cluster { get; init; }
    public long Generation { get; init; }
    public string? Node { get; init; }
    public string? NodeName { get; init; }
    public int[] Gpus { get; init; } = [];
    public ReplicaState State { get; init; }
    /// <summary>Why the replica is in its state (for example why it is pending, or why it drains), or null.</summary>
    public string? Reason { get; init; }
    /// <summary>When the replica left routing to finish its in-flight requests before it stops; null unless draining.</summary>
    public DateTimeOffset? DrainingSince { get; init; }
    public bool Healthy { get; init; }
    public int Restarts { get; init; }
    public int? ExitCode { get; init; }
    public string? Address { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? AssignedAt { get; init; }
    public DateTimeOffset? PulledAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? ReadyAt { get; init; }
    public ReplicaLoad? Load { get; init; }
    /// <summary>Image pull progress, 0-100, while pulling.</summary>
    public double? PullProgress { get; init; }
    /// <summary>The exact image the replica runs.</summary>
    public string? ImageDigest { get; init; }
}

/// <summary>Body of <c>GET /v1/clusters/{name}/status</c>.</summary>
public sealed record ClusterStatusDto
{
    public required ClusterDto Cluster { get; init; }
    public required ReplicaDto[] Replicas { get; init; }
}

/// <summary>The kinds of <see cref="ClusterEventDto"/>, as their wire strings.</summary>
public static class ClusterEventTypes
{
    /// <summary>The cluster was created.</summary>
    public const string Created = "created";
    /// <summary>Its replica count changed (by a user, or by the autoscaler with its reason).</summary>
    public const string Scaled = "scaled";
    /// <summary>Its autoscaling settings changed (turned on, off, or new bounds or targets).</summary>
    public const string Autoscale = "autoscale";
    /// <summary>A replica was placed on a node.</summary>
    public const string Scheduled = "scheduled";
    /// <summary>A replica cannot be placed (the message says why); repeated only when the reason changes.</summary>
    public const string Pending = "pending";
    /// <summary>A replica's node is pulling its image.</summary>
    public const string Pulling = "pulling";
    /// <summary>A replica's process or container started (first start).</summary>
    public const string Started = "started";
    /// <summary>A replica was started again by its agent after it exited or failed its probes.</summary>
    public const string Restarted = "restarted";
    /// <summary>A replica passed its health probe and takes traffic.</summary>
    public const string Ready = "ready";
    /// <summary>A replica failed its health probes: out of routing.</summary>
    public const string Unhealthy = "unhealthy";
    /// <summary>A replica exited or could not start (the message has the exit code or error).</summary>
    public const string Failed = "failed";
    /// <summary>The node under some of the cluster's replicas disconnected (socket closed or heartbeats missed).</summary>
    public const string NodeLost = "node-lost";
    /// <summary>That node came back before its replicas were replaced.</summary>
    public const string NodeBack = "node-back";
    /// <summary>A replica on a node gone past its grace period was removed; a new one is placed elsewhere.</summary>
    public const string Replaced = "replaced";
    /// <summary>A replica was removed because the cluster scaled down.</summary>
    public const string Removed = "removed";
    /// <summary>An update started: a new generation replaces the replicas one at a time.</summary>
    public const string UpdateStarted = "update-started";
    /// <summary>Every replica runs the new generation.</summary>
    public const string UpdateCompleted = "update-completed";
    /// <summary>An update failed (the message says why) and the cluster went back to the previous generation.</summary>
    public const string RolledBack = "rolled-back";
    /// <summary>A replica left routing and waits for its in-flight requests before it stops (update, scale down, node drain…).</summary>
    public const string Draining = "draining";
    /// <summary>A draining replica finished (or its drain timeout passed) and was stopped.</summary>
    public const string Drained = "drained";
    /// <summary>The node under a replica was cordoned (no new replicas) or set to drain.</summary>
    public const string Cordoned = "cordoned";
    /// <summary>The node under a replica takes new replicas again.</summary>
    public const string Uncordoned = "uncordoned";
    /// <summary>The cluster gave up: its spec failed on every attempt (the message says how and the last reason); it runs nothing until an update.</summary>
    public const string ClusterFailed = "cluster-failed";
    /// <summary>A replica is ready but no edge is sent to it: its node's address or port is refused (the message says why).</summary>
    public const string Unroutable = "unroutable";
}

/// <summary>One entry of <c>GET /v1/clusters/{name}/events</c>.</summary>
public sealed record ClusterEventDto
{
    /// <summary>Orders events; higher is later.</summary>
    public long Seq { get; init; }
    public DateTimeOffset At { get; init; }
    /// <summary>One of <see cref="ClusterEventTypes"/>.</summary>
    public required string Type { get; init; }
    public string? Replica { get; init; }
    public string? Node { get; init; }
    public string? NodeName { get; init; }
    public required string Message { get; init; }
    /// <summary>Who asked for it (<c>key-id (name)</c>) when an API call caused it; null for what the control plane did by itself.</summary>
    public string? Actor { get; init; }
}

/// <summary>A node as the API shows it.</summary>
public sealed record NodeDto
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public NodeState State { get; init; }
    public required NodeHardware Hardware { get; init; }
    public string[] Runtimes { get; init; } = [];
    public string? Address { get; init; }
    public int Replicas { get; init; }
    public int FreeGpus { get; init; }
    /// <summary>No new replicas are placed on the node.</summary>
    public bool Cordoned { get; init; }
    /// <summary>The node's replicas are being moved to other nodes (it is cordoned too).</summary>
    public bool Draining { get; init; }
    public long Revision { get; init; }
    public long AckedRevision { get; init; }
    public DateTimeOffset RegisteredAt { get; init; }
    public DateTimeOffset? LastSeenAt { get; init; }
    /// <summary>0 (flaps all the time) to 1 (steady): placement prefers reliable nodes.</summary>
    public double Reliability { get; init; } = 1.0;
    /// <summary>Times the node lost its connection in the last 10 minutes.</summary>
    public int RecentDisconnects { get; init; }
    /// <summary>Disconnects too often: given work only when no steady node fits, and its replicas move to steady nodes.</summary>
    public bool Flapping { get; init; }
    /// <summary>Waits for <c>shoal nodes approve</c>: it gets no work until then.</summary>
    public bool Pending { get; init; }
    /// <summary>Labels the operator gave the node (through its provisioning token).</summary>
    public string[] Labels { get; init; } = [];
    /// <summary>The most GPUs the node may report (from its token); null for no cap.</summary>
    public int? MaxGpus { get; init; }
    /// <summary>The operator lets edges connect to the node's address (direct mode).</summary>
    public bool DirectAllowed { get; init; }
    /// <summary>True when the node is reached over its tunnels (false: direct, at <see cref="Address"/>).</summary>
    public bool Tunnel { get; init; }
    /// <summary>Why edges do not connect to the node's address (direct mode refused); null when they may, or it uses tunnels.</summary>
    public string? AddressRefused { get; init; }
    /// <summary>When the server marked the node disconnected (its socket closed, or it missed its heartbeats); null unless it is disconnected now.</summary>
    public DateTimeOffset? DisconnectedSince { get; init; }
}

/// <summary>A GPU type in the catalogue and how many are free right now.</summary>
public sealed record GpuTypeDto
{
    public required string Type { get; init; }
    public required string DisplayName { get; init; }
    public long MemoryMiB { get; init; }
    public int Total { get; init; }
    public int Free { get; init; }
}

/// <summary>Body of <c>POST /v1/tokens</c>.</summary>
public sealed record CreateTokenRequest
{
    public string? Description { get; init; }
    /// <summary>Lifetime in seconds; default one hour, at most 30 days.</summary>
    public int? TtlSeconds { get; init; }
    /// <summary>How many nodes may register with the token; default 1.</summary>
    public int? Uses { get; init; }
    /// <summary><c>auto</c> (default): nodes work at once; <c>manual</c>: they wait as pending until <c>shoal nodes approve</c>.</summary>
    public string? Approve { get; init; }
    /// <summary>The most GPUs a node admitted with the token may report (1-64); default no cap.</summary>
    public int? MaxGpus { get; init; }
    /// <summary>Labels given to the nodes it admits, such as <c>trusted</c>.</summary>
    public string[]? Labels { get; init; }
    /// <summary>Nodes it admits may be reached directly at their address (direct mode), within the server's node networks. Default false: tunnels only.</summary>
    public bool? Direct { get; init; }
}

/// <summary>Values of <see cref="CreateTokenRequest.Approve"/>.</summary>
public static class TokenApproval
{
    public const string Auto = "auto";
    public const string Manual = "manual";
}

/// <summary>A provisioning token, shown once.</summary>
public sealed record TokenCreatedDto
{
    public required string Id { get; init; }
    public required string Token { get; init; }
    public string? Description { get; init; }
    public int Uses { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }
    /// <summary><c>auto</c> or <c>manual</c>.</summary>
    public string Approve { get; init; } = TokenApproval.Auto;
    public int? MaxGpus { get; init; }
    public string[] Labels { get; init; } = [];
    public bool Direct { get; init; }
}

/// <summary>The error body every failed API call returns.</summary>
public sealed record ErrorResponse(ErrorBody Error);

/// <summary>Machine-readable code, human message and HTTP status of an error.</summary>
public sealed record ErrorBody(string Code, string Message, int Status);

/// <summary>Error codes used in <see cref="ErrorBody.Code"/>.</summary>
public static class ErrorCodes
{
    public const string InvalidArgument = "invalid_argument";
    public const string NotFound = "not_found";
    public const string AlreadyExists = "already_exists";
    public const string Unauthorized = "unauthorized";
    public const string Forbidden = "forbidden";
    public const string RateLimited = "rate_limited";
    public const string PayloadTooLarge = "payload_too_large";
    public const string Unavailable = "unavailable";
    public const string Internal = "internal";
}
