using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.Store.Tests;

/// <summary>Records with every field set to a non-default value, and comparisons that see into arrays.</summary>
internal static class Samples
{
    // Non-UTC offsets on purpose: the store keeps the instant, not the offset.
    public static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeMilliseconds(1_735_689_600_123).ToOffset(TimeSpan.FromHours(2));

    public static DateTimeOffset At(int seconds) => T0.AddSeconds(seconds);

    public static ClusterSpec Spec(string name = "llama", string gpu = "rtx-4090") => new()
    {
        Name = name,
        Image = "ghcr.io/acme/vllm:0.6.3",
        Gpu = gpu,
        GpuCount = 2,
        Replicas = 3,
        Port = 8123,
        Env = new(StringComparer.Ordinal) { ["HF_TOKEN"] = "secret value", ["EMPTY"] = "", ["UNICODE"] = "héllo ✓" },
        Args = ["--model", "meta/llama-3-8b", "--max-model-len=8192"],
        Health = new HealthCheckSpec { Path = "/ready", IntervalMs = 1500, TimeoutMs = 700, FailureThreshold = 5, SuccessThreshold = 2, InitialDelayMs = 45_000 },
        DrainTimeoutSeconds = 12,
        ProgressDeadlineSeconds = 600,
        Models = ["llama-3-8b", "llama-alias"],
    };

    /// <summary>A cluster with every kind of secret: secret env and registry credentials, in its spec and in an earlier generation's.</summary>
    public static ClusterRecord ClusterWithSecrets(string id = "c1", string name = "llama")
    {
        var cluster = Cluster(id, name);
        var secrets = new ClusterSpec
        {
            Name = name,
            Image = cluster.Spec.Image,
            Gpu = cluster.Spec.Gpu,
            SecretEnv = new(StringComparer.Ordinal) { ["HF_TOKEN"] = "hf_sealed-spec-value", ["DB_PASSWORD"] = "pässwörd ✓" },
            RegistryAuth = new RegistryCredentials { Server = "ghcr.io", Username = "acme-bot", Password = "registry-sealed-password" },
        };
        return cluster with
        {
            Spec = cluster.Spec with { SecretEnv = secrets.SecretEnv, RegistryAuth = secrets.RegistryAuth },
            Rollout = cluster.Rollout with
            {
                Generations = new() { [6] = new GenerationSpec(cluster.Rollout.Generations[6].Spec with { SecretEnv = new(StringComparer.Ordinal) { ["HF_TOKEN"] = "hf_sealed-old-generation" }, RegistryAuth = secrets.RegistryAuth }, null) },
            },
        };
    }

    public static ClusterRecord Cluster(string id = "c1", string name = "llama", string project = "team-a") => new()
    {
        Id = id,
        Project = project,
        Spec = Spec(name),
        Generation = 7,
        CreatedAt = At(1),
        UpdatedAt = At(2),
        Rollout = new ClusterRollout
        {
            State = RolloutStates.Progressing,
            Reason = "image a → b",
            StartedAt = At(3),
            StableGeneration = 6,
            Generations = { [6] = new GenerationSpec(Spec(name) with { Image = "ghcr.io/acme/vllm:0.6.2" }, "ghcr.io/acme/vllm@sha256:" + new string('b', 64)) },
            AvoidNodes = { ["n9"] = At(600) },
        },
    };

    public static ReplicaRecord FullReplica(string id = "r1", string clusterId = "c1") => new()
    {
        Id = id,
        ClusterId = clusterId,
        Generation = 4,
        NodeId = "n1",
        GpuIndexes = [3, 1],
        State = ReplicaState.Unhealthy,
        Reason = "health probe failed: 503",
        Healthy = true,
        Restarts = 9,
        ExitCode = -11,
        HostPort = 41234,
        CreatedAt = At(10),
        AssignedAt = At(11),
        PulledAt = At(12),
        StartedAt = At(13),
        ReadyAt = At(14),
        UpdatedAt = At(15),
        DrainingSince = At(16),
        DrainReason = "the cluster scaled down",
        RecentRestarts = [At(12), At(13).AddMilliseconds(250)],
        LastFailure = "exited with code 3; last output: [fatal: no weights]; restarting in 2 s",
    };

    /// <summary>Every nullable left null, every default left default.</summary>
    public static ReplicaRecord BareReplica(string id = "r2", string clusterId = "c1") => new()
    {
        Id = id,
        ClusterId = clusterId,
        CreatedAt = At(20),
        UpdatedAt = At(21),
    };

    public static NodeRecord FullNode(string id = "n1") => new()
    {
        Id = id,
        Name = "gpu-box-" + id,
        SecretHash = "sha256:" + new string('a', 64),
        Hardware = new NodeHardware
        {
            Gpus =
            [
                new GpuInfo { Index = 0, Uuid = "GPU-0000", Name = "NVIDIA GeForce RTX 4090", Type = "rtx-4090", MemoryMiB = 24564, Simulated = true },
                new GpuInfo { Index = 1, Uuid = "GPU-1111", Name = "NVIDIA GeForce RTX 4090", Type = "rtx-4090", MemoryMiB = 24564 },
            ],
            CpuCores = 32,
            MemoryMiB = 257_000,
            DiskFreeMiB = 1_800_000,
            Os = "Debian GNU/Linux 12",
            Hostname = "box-1",
        },
        Runtimes = ["docker", "process"],
        Images = ["shoal/sim", "ghcr.io/acme/vllm:0.6.3"],
        Address = "10.1.2.3",
        State = NodeState.Draining,
        Cordoned = true,
        Draining = true,
        Revision = 42,
        AckedRevision = 41,
        Disconnects = 3,
        RegisteredAt = At(30),
        LastSeenAt = At(31),
        Approved = false,
        Labels = ["eu", "trusted"],
        MaxGpus = 4,
        DirectAllowed = true,
        Tunnel = false,
        RecentDisconnects = [At(20), At(25)],
    };

    public static NodeRecord BareNode(string id = "n2") => new()
    {
        Id = id,
        Name = "bare",
        SecretHash = "h",
        RegisteredAt = At(40),
    };

    public static ProvisioningTokenRecord Token(string id = "t1", int maxUses = 1, string? hash = null) => new()
    {
        Id = id,
        Hash = hash ?? "hash-" + id,
        Description = "rack 7",
        MaxUses = maxUses,
        CreatedAt = At(0),
        ExpiresAt = At(3600),
        ManualApproval = true,
        MaxGpus = 8,
        Labels = ["trusted"],
        AllowDirect = true,
    };

    public static void Equal(ClusterRecord expected, ClusterRecord actual)
    {
        Assert.Equal(expected.Spec.Env, actual.Spec.Env);
        Assert.Equal(expected.Spec.SecretEnv, actual.Spec.SecretEnv);
        Assert.Equal(expected.Spec.Args, actual.Spec.Args);
        Assert.Equal(expected.Spec.Health, actual.Spec.Health);
        Assert.Equal(expected.Spec.Models, actual.Spec.Models);
        var spec = actual.Spec with { Env = expected.Spec.Env, SecretEnv = expected.Spec.SecretEnv, Args = expected.Spec.Args, Models = expected.Spec.Models };
        // The rollout holds dictionaries (compared by reference in a record): compare it as stored.
        Assert.Equal(
            System.Text.Json.JsonSerializer.Serialize(expected.Rollout, Shoal.Core.CoreJsonContext.Default.ClusterRollout),
            System.Text.Json.JsonSerializer.Serialize(actual.Rollout, Shoal.Core.CoreJsonContext.Default.ClusterRollout));
        Assert.Equal(expected, actual with { Spec = expected.Spec, Rollout = expected.Rollout });
        Assert.Equal(expected.Spec, spec);
    }

    public static void Equal(ReplicaRecord expected, ReplicaRecord actual)
    {
        Assert.Equal(expected.GpuIndexes, actual.GpuIndexes);
        Assert.Equal(expected.RecentRestarts, actual.RecentRestarts);
        Assert.Equal(expected, actual with { GpuIndexes = expected.GpuIndexes, RecentRestarts = expected.RecentRestarts });
    }

    public static void Equal(NodeRecord expected, NodeRecord actual)
    {
        Assert.Equal(expected.Hardware.Gpus, actual.Hardware.Gpus);
        Assert.Equal(expected.Hardware, actual.Hardware with { Gpus = expected.Hardware.Gpus });
        Assert.Equal(expected.Runtimes, actual.Runtimes);
        Assert.Equal(expected.Images, actual.Images);
        Assert.Equal(expected.Labels, actual.Labels);
        Assert.Equal(expected.RecentDisconnects, actual.RecentDisconnects);
        Assert.Equal(expected, actual with
        {
            Hardware = expected.Hardware, Runtimes = expected.Runtimes, Images = expected.Images, Labels = expected.Labels, RecentDisconnects = expected.RecentDisconnects,
        });
    }

    public static void Equal(ProvisioningTokenRecord expected, ProvisioningTokenRecord actual)
    {
        Assert.Equal(expected.Labels, actual.Labels);
        Assert.Equal(expected, actual with { Labels = expected.Labels });
    }
}
