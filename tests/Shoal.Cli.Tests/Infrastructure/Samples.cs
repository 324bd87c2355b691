using Shoal.Contracts;

namespace Shoal.Cli.Tests.Infrastructure;

/// <summary>Canned API objects.</summary>
public static class Samples
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    public static ClusterDto Cluster(string name = "demo", int replicas = 2, int ready = 2) => new()
    {
        Name = name,
        Image = "shoal/sim",
        Gpu = "rtx-4090",
        GpuCount = 1,
        Replicas = replicas,
        ReadyReplicas = ready,
        Port = 8000,
        Generation = 3,
        Endpoint = $"http://127.0.0.1:8080/c/{name}",
        CreatedAt = T0,
        UpdatedAt = T0,
    };

    public static ReplicaDto Replica(string id, ReplicaState state, string? reason = null, string? nodeName = "gpu-box-1") => new()
    {
        Id = id,
        Cluster = "demo",
        Generation = 3,
        Node = nodeName is null ? null : "n-1",
        NodeName = nodeName,
        Gpus = nodeName is null ? [] : [0],
        State = state,
        Reason = reason,
        Healthy = state == ReplicaState.Ready,
        Restarts = 1,
        CreatedAt = T0,
        AssignedAt = nodeName is null ? null : T0.AddMilliseconds(12),
        PulledAt = nodeName is null ? null : T0.AddMilliseconds(12 + 1400),
        StartedAt = nodeName is null ? null : T0.AddSeconds(2),
        ReadyAt = state == ReplicaState.Ready ? T0.AddSeconds(2).AddMinutes(2).AddSeconds(5) : null,
    };

    public static ClusterStatusDto Status(ClusterDto cluster, params ReplicaDto[] replicas) => new() { Cluster = cluster, Replicas = replicas };

    public static NodeDto Node(string name, DateTimeOffset? lastSeen, params string[] gpuTypes) => new()
    {
        Id = "n-" + name,
        Name = name,
        State = NodeState.Ready,
        Hardware = new NodeHardware
        {
            Gpus = [.. gpuTypes.Select((t, i) => new GpuInfo { Index = i, Uuid = $"GPU-{name}-{i}", Name = "NVIDIA " + t, Type = t, MemoryMiB = 24576 })],
        },
        Replicas = 1,
        FreeGpus = 1,
        RegisteredAt = T0,
        LastSeenAt = lastSeen,
    };
}
