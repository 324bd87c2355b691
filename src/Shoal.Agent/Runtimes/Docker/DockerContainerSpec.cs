using System.Globalization;
using Docker.DotNet.Models;
using Shoal.Contracts;

namespace Shoal.Agent.Runtimes.Docker;

/// <summary>How replica containers reach the network.</summary>
public enum DockerNetworkMode
{
    /// <summary>The engine's bridge; the replica's port is published on 127.0.0.1 only.</summary>
    Bridge,

    /// <summary>The host's network; the replica listens on <c>PORT</c>, a free loopback port the agent picked.</summary>
    Host,
}

/// <summary>The resources one replica may use: its share of the node, by the GPUs it was given.</summary>
public readonly record struct ResourceLimits(long MemoryBytes, long NanoCpus, long PidsLimit)
{
    /// <summary>Memory kept back for the agent and the system before the node is shared out.</summary>
    public const long ReservedMemoryBytes = 1L << 30;

    /// <summary>
    /// The replica's share of the node: its GPUs over the node's GPUs (all of it on a node
    /// without GPUs), of the CPU cores and of the memory left after <see cref="ReservedMemoryBytes"/>
    /// (at most a tenth of the node's memory).
    /// </summary>
    public static ResourceLimits ShareOf(int replicaGpus, int nodeGpus, int cpuCores, long memoryMiB, long pidsLimit)
    {
        var share = nodeGpus <= 0 ? 1.0 : Math.Clamp(Math.Max(1, replicaGpus) / (double)nodeGpus, 0, 1);
        var memory = Math.Max(0, memoryMiB) * 1024L * 1024L;
        var usable = memory - Math.Min(ReservedMemoryBytes, memory / 10);
        var memoryLimit = Math.Max(64L * 1024 * 1024, (long)(usable * share));
        var nanoCpus = Math.Max(100_000_000L, (long)(Math.Max(1, cpuCores) * share * 1_000_000_000L));
        return new ResourceLimits(memoryLimit, nanoCpus, pidsLimit);
    }
}

/// <summary>Everything besides the assignment that decides how a replica's container is made.</summary>
public sealed record ContainerSettings
{
    public required string NodeId { get; init; }
    /// <summary>The exact image to run: a digest reference or an image id.</summary>
    public required string ImageToRun { get; init; }
    /// <summary>The loopback port the agent probes and the edge reaches.</summary>
    public required int HostPort { get; init; }
    public DockerNetworkMode Network { get; init; } = DockerNetworkMode.Bridge;
    /// <summary>OCI runtime for the container (<c>kata-runtime</c>, <c>runsc</c>), or null for the engine's default.</summary>
    public string? OciRuntime { get; init; }
    public required ResourceLimits Limits { get; init; }
    /// <summary>UUIDs of the real GPUs assigned (in assignment order); empty for simulated GPUs.</summary>
    public IReadOnlyList<string> GpuUuids { get; init; } = [];
    /// <summary>A writable root file system instead of a read-only one with tmpfs scratch. Default: false.</summary>
    public bool WritableRoot { get; init; }
    /// <summary>The size of each tmpfs scratch mount (<see cref="DockerContainerSpec.ScratchPaths"/>). Default: 1 GiB.</summary>
    public long ScratchBytes { get; init; } = DockerContainerSpec.DefaultScratchBytes;
    /// <summary>The user the workload runs as (<c>uid[:gid]</c>), or null for the image's own. Default: null.</summary>
    public string? User { get; init; }
}

/// <summary>
/// Builds the container a replica runs in. Pure, so the security-relevant parts are unit tested:
/// never privileged, every capability dropped, no new privileges, no host mounts, a read-only root
/// with size-limited tmpfs scratch, limits from the node's share, the assigned GPUs only, and the
/// port on loopback only.
/// </summary>
public static class DockerContainerSpec
{
    /// <summary>
    /// Where a container with a read-only root may write: <c>/tmp</c>, and the cache a model server
    /// uses when it runs as root (<c>~/.cache</c>: Hugging Face, vLLM, Triton, pip).
    /// </summary>
    public static readonly IReadOnlyList<string> ScratchPaths = ["/tmp", "/root/.cache"];

    /// <summary>Default size of each scratch tmpfs: 1 GiB (it counts towards the container's memory).</summary>
    public const long DefaultScratchBytes = 1L << 30;

    /// <summary>The container name for a replica (unique per engine: one container per replica).</summary>
    public static string ContainerName(string replicaId) => "shoal-" + replicaId;

    public static CreateContainerParameters Build(Assignment assignment, ContainerSettings settings)
    {
        var port = settings.Network == DockerNetworkMode.Host ? settings.HostPort : assignment.Port;
        var containerPort = port.ToString(CultureInfo.InvariantCulture) + "/tcp";
        var env = new Dictionary<string, string>(assignment.Env, StringComparer.Ordinal)
        {
            ["PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["SHOAL_GPU_TYPE"] = assignment.Gpu,
            ["SHOAL_REPLICA_ID"] = assignment.ReplicaId,
            ["SHOAL_CLUSTER"] = assignment.Cluster,
        };
        if (settings.GpuUuids.Count > 0)
        {
            // The device request gives the container exactly these GPUs; inside, CUDA numbers them 0..n-1.
            env["NVIDIA_VISIBLE_DEVICES"] = string.Join(',', settings.GpuUuids);
            env["CUDA_VISIBLE_DEVICES"] = string.Join(',', Enumerable.Range(0, settings.GpuUuids.Count));
        }
        else
        {
            // Simulated GPUs: no device to hand over; the indexes tell the workload what it was given.
            env["NVIDIA_VISIBLE_DEVICES"] = "void";
            env["CUDA_VISIBLE_DEVICES"] = string.Join(',', assignment.GpuIndexes);
        }

        var host = new HostConfig
        {
            Privileged = false,
            CapDrop = ["ALL"],
            SecurityOpt = ["no-new-privileges"],
            Binds = [],
            Mounts = [],
            Memory = settings.Limits.MemoryBytes,
            MemorySwap = settings.Limits.MemoryBytes,
            NanoCPUs = settings.Limits.NanoCpus,
            PidsLimit = settings.Limits.PidsLimit,
            ShmSize = Math.Min(1L << 30, settings.Limits.MemoryBytes / 4),
            Runtime = string.IsNullOrWhiteSpace(settings.OciRuntime) ? null : settings.OciRuntime,
            // Nothing a replica writes outlives it, and it cannot change the image's programs.
            ReadonlyRootfs = !settings.WritableRoot,
            Tmpfs = settings.WritableRoot
                ? null
                : ScratchPaths.ToDictionary(p => p, _ => "rw,nosuid,nodev,mode=1777,size=" + settings.ScratchBytes.ToString(CultureInfo.InvariantCulture), StringComparer.Ordinal),
            // A small init as PID 1 passes SIGTERM on and reaps what the workload leaves behind.
            Init = true,
            RestartPolicy = new RestartPolicy { Name = RestartPolicyKind.No },
            LogConfig = new LogConfig
            {
                Type = "json-file",
                Config = new Dictionary<string, string> { ["max-size"] = "10m", ["max-file"] = "2" },
            },
        };
        Dictionary<string, EmptyStruct>? exposed = null;
        if (settings.Network == DockerNetworkMode.Host)
        {
            host.NetworkMode = "host";
        }
        else
        {
            host.NetworkMode = "bridge";
            exposed = new Dictionary<string, EmptyStruct> { [containerPort] = default };
            host.PortBindings = new Dictionary<string, IList<PortBinding>>
            {
                [containerPort] = [new PortBinding { HostIP = "127.0.0.1", HostPort = settings.HostPort.ToString(CultureInfo.InvariantCulture) }],
            };
        }
        if (settings.GpuUuids.Count > 0)
        {
            host.DeviceRequests =
            [
                new DeviceRequest { Driver = "nvidia", DeviceIDs = [.. settings.GpuUuids], Capabilities = [["gpu"]] },
            ];
        }

        return new CreateContainerParameters
        {
            Name = ContainerName(assignment.ReplicaId),
            Image = settings.ImageToRun,
            Env = [.. env.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}")],
            Cmd = assignment.Args.Length > 0 ? [.. assignment.Args] : null!,
            User = string.IsNullOrWhiteSpace(settings.User) ? null! : settings.User,
            ExposedPorts = exposed,
            Labels = Labels(assignment, settings),
            HostConfig = host,
        };
    }

    public static Dictionary<string, string> Labels(Assignment assignment, ContainerSettings settings) => new(StringComparer.Ordinal)
    {
        [DockerLabels.Managed] = "true",
        [DockerLabels.Node] = settings.NodeId,
        [DockerLabels.Cluster] = assignment.Cluster,
        [DockerLabels.Replica] = assignment.ReplicaId,
        [DockerLabels.Generation] = assignment.Generation.ToString(CultureInfo.InvariantCulture),
        [DockerLabels.HostPort] = settings.HostPort.ToString(CultureInfo.InvariantCulture),
        [DockerLabels.Image] = settings.ImageToRun,
    };
}
