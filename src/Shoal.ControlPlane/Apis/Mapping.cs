using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane;

/// <summary>From the control plane's records to the API's DTOs.</summary>
internal static class Mapping
{
    public static ClusterDto ToDto(this ClusterView view, string edgeUrl)
    {
        var c = view.Cluster;
        return new ClusterDto
        {
            Name = c.Name,
            Project = c.Project,
            Public = c.Spec.Public,
            Image = c.Spec.Image,
            Gpu = c.Spec.Gpu,
            GpuCount = c.Spec.GpuCount,
            Replicas = c.Spec.Replicas,
            ReadyReplicas = view.Replicas.Count(r => r.Routable),
            Port = c.Spec.Port,
            Generation = c.Generation,
            Env = c.Spec.Env,
            SecretEnv = c.Spec.SecretEnv.Keys.ToDictionary(name => name, _ => SecretValue.Mask, StringComparer.Ordinal),
            Args = c.Spec.Args,
            Health = c.Spec.Health,
            NodeLabels = [.. c.Spec.RequiredNodeLabels],
            Routing = c.Spec.Routing,
            QueueTimeoutSeconds = c.Spec.QueueTimeoutSeconds,
            FirstByteTimeoutSeconds = c.Spec.FirstByteTimeoutSeconds,
            DrainTimeoutSeconds = c.Spec.DrainTimeoutSeconds,
            ProgressDeadlineSeconds = c.Spec.ProgressDeadlineSeconds,
            MaxHeld = c.Spec.MaxHeld,
            Models = view.Models,
            ModelsDeclared = c.Spec.Models is not null,
            Price = c.Spec.Price,
            Autoscale = c.Spec.Autoscale is { } autoscale ? AutoscaleOf(autoscale, view.Autoscale) : null,
            ColdStart = view.ColdStart,
            Rollout = new RolloutDto
            {
                Generation = c.Generation,
                State = c.Rollout.State,
                Reason = c.Rollout.Reason,
                StartedAt = c.Rollout.StartedAt,
                FinishedAt = c.Rollout.FinishedAt,
                UpdatedReplicas = view.UpdatedReplicas,
                OutdatedReplicas = view.OutdatedReplicas,
                DrainingReplicas = view.DrainingReplicas,
            },
            Failure = c.Rollout.Failure,
            FailedAt = c.Rollout.FailedAt,
            FailedAttempts = c.Rollout.FailedAttempts,
            Endpoint = $"{edgeUrl.TrimEnd('/')}/c/{c.Name}",
            ImageDigest = c.ImageDigest,
            RegistryUser = c.Spec.RegistryAuth?.Username,
            CreatedAt = c.CreatedAt,
            UpdatedAt = c.UpdatedAt,
        };
    }

    private static AutoscaleDto AutoscaleOf(AutoscaleSpec settings, AutoscaleStatus? status) => new()
    {
        Settings = settings,
        Desired = status?.Decision.Desired,
        Reason = status?.Decision.Reason,
        DecidedAt = status?.DecidedAt,
        LastChange = status?.LastChange,
        LastChangeAt = status?.LastChangeAt,
        Waiting = status?.Decision.Waiting ?? 0,
        InFlight = status?.Decision.InFlight ?? 0,
        Held = status?.Decision.Held ?? 0,
    };

    /// <summary>
    /// What the API says of a replica: draining is the control plane's doing (the agent still reports
    /// it as it runs); a replica its agent last called ready that no edge may reach (its node is lost,
    /// or its address is refused) is unreachable, so every reader counts it as not ready.
    /// </summary>
    private static (ReplicaState State, string? Reason) StateOf(ReplicaView view)
    {
        var r = view.Replica;
        if (r.DrainingSince is not null) return (ReplicaState.Draining, r.DrainReason);
        if (r.State != ReplicaState.Ready || !r.Healthy || view.Routable) return (r.State, r.Reason);
        if (view.Node is { State: NodeState.Disconnected or NodeState.Offline } node)
        {
            return (ReplicaState.Unreachable, $"node {node.Name} lost: out of routing, replaced unless it returns within its grace period");
        }
        return (ReplicaState.Unreachable, "edges may not reach it (see shoal nodes)");
    }

    public static ReplicaDto ToDto(this ReplicaView view, string cluster)
    {
        var r = view.Replica;
        var (state, reason) = StateOf(view);
        return new ReplicaDto
        {
            Id = r.Id,
            Cluster = cluster,
            Generation = r.Generation,
            Node = r.NodeId,
            NodeName = view.Node?.Name,
            Gpus = r.GpuIndexes,
            State = state,
            Reason = reason,
            DrainingSince = r.DrainingSince,
            Healthy = r.Healthy && state != ReplicaState.Unreachable,
            Restarts = r.Restarts,
            ExitCode = r.ExitCode,
            Address = view.Node is not null && r.HostPort is not null ? $"{view.Node.Address}:{r.HostPort}" : null,
            CreatedAt = r.CreatedAt,
            AssignedAt = r.AssignedAt,
            PulledAt = r.PulledAt,
            StartedAt = r.StartedAt,
            ReadyAt = r.ReadyAt,
            Load = view.Load,
            PullProgress = r.PullProgress,
            ImageDigest = r.ImageDigest,
        };
    }

    public static ClusterEventDto ToDto(this ClusterEventRecord e) => new()
    {
        Seq = e.Seq,
        At = e.At,
        Type = e.Type,
        Replica = e.ReplicaId,
        Node = e.NodeId,
        NodeName = e.NodeName,
        Message = e.Message,
        Actor = e.Actor,
    };

    public static ApiKeyDto ToDto(this ApiKeyRecord k) => new()
    {
        Id = k.Id,
        Name = k.Name,
        Role = k.Role,
        Project = k.Project,
        Prefix = k.Prefix,
        RateLimitPerMinute = k.RateLimitPerMinute,
        CreatedAt = k.CreatedAt,
        ExpiresAt = k.ExpiresAt,
        RevokedAt = k.RevokedAt,
        CreatedBy = k.CreatedBy,
        Limits = k.Limits,
        Budget = k.Budget,
    };

    public static ProjectDto ToDto(this ProjectRecord p) => new() { Name = p.Name, Description = p.Description, CreatedAt = p.CreatedAt, Limits = p.Limits, Budget = p.Budget };

    public static TokenDto ToDto(this ProvisioningTokenRecord t) => new()
    {
        Id = t.Id,
        Description = t.Description,
        MaxUses = t.MaxUses,
        Uses = t.Uses,
        CreatedAt = t.CreatedAt,
        ExpiresAt = t.ExpiresAt,
        RevokedAt = t.RevokedAt,
    };

    public static NodeDto ToDto(this NodeView view)
    {
        var n = view.Node;
        return new NodeDto
        {
            Id = n.Id,
            Name = n.Name,
            State = n.State,
            Hardware = n.Hardware,
            Runtimes = n.Runtimes,
            Address = n.Address,
            Replicas = view.Replicas,
            FreeGpus = view.FreeGpus,
            Cordoned = n.Cordoned,
            Draining = n.Draining,
            Revision = n.Revision,
            AckedRevision = n.AckedRevision,
            RegisteredAt = n.RegisteredAt,
            LastSeenAt = n.LastSeenAt,
            Reliability = view.Reliability.Score,
            RecentDisconnects = view.Reliability.RecentDisconnects,
            Flapping = view.Reliability.Flapping,
            Pending = !n.Approved,
            Labels = n.Labels,
            MaxGpus = n.MaxGpus,
            DirectAllowed = n.DirectAllowed,
            Tunnel = view.Tunnel,
            AddressRefused = view.AddressRefused,
            DisconnectedSince = view.DisconnectedSince,
        };
    }
}
