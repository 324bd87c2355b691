// The engine models are nullable throughout; the spec under test sets what these tests read.
#pragma warning disable CS8602, CS8604

using Shoal.Agent.Runtimes.Docker;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Runtimes.Docker;

public class DockerContainerSpecTests
{
    private static readonly Assignment s_assignment = new()
    {
        ReplicaId = "llm-abc123",
        Cluster = "llm",
        Generation = 3,
        Image = "ghcr.io/org/model:1",
        Gpu = "rtx-4090",
        GpuIndexes = [1, 3],
        Port = 8000,
        Env = new() { ["MODEL"] = "tiny" },
        Args = ["--max-len", "4096"],
    };

    private static ContainerSettings Settings(DockerNetworkMode network = DockerNetworkMode.Bridge, IReadOnlyList<string>? gpus = null, string? runtime = null) => new()
    {
        NodeId = "n-node1",
        ImageToRun = "ghcr.io/org/model@sha256:" + new string('a', 64),
        HostPort = 41000,
        Network = network,
        OciRuntime = runtime,
        Limits = new ResourceLimits(8L << 30, 4_000_000_000, 4096),
        GpuUuids = gpus ?? ["GPU-1111", "GPU-3333"],
    };

    private static Dictionary<string, string> Env(IEnumerable<string> env) =>
        env.Select(e => e.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

    [Fact]
    public void Gives_exactly_the_assigned_gpus_by_uuid_to_the_nvidia_driver()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings());

        var request = Assert.Single(spec.HostConfig.DeviceRequests);
        Assert.Equal("nvidia", request.Driver);
        Assert.Equal(["GPU-1111", "GPU-3333"], request.DeviceIDs);
        Assert.Equal([["gpu"]], request.Capabilities.Select(c => c.ToArray()).ToArray());
        var env = Env(spec.Env);
        Assert.Equal("GPU-1111,GPU-3333", env["NVIDIA_VISIBLE_DEVICES"]);
        Assert.Equal("0,1", env["CUDA_VISIBLE_DEVICES"]);
    }

    [Fact]
    public void Simulated_gpus_get_no_device_request_and_no_visible_devices()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings(gpus: []));

        Assert.Null(spec.HostConfig.DeviceRequests);
        var env = Env(spec.Env);
        Assert.Equal("void", env["NVIDIA_VISIBLE_DEVICES"]);
        Assert.Equal("1,3", env["CUDA_VISIBLE_DEVICES"]);
    }

    [Fact]
    public void Is_never_privileged_drops_every_capability_and_mounts_nothing_from_the_host()
    {
        var host = DockerContainerSpec.Build(s_assignment, Settings()).HostConfig;

        Assert.False(host.Privileged);
        Assert.Equal(["ALL"], host.CapDrop);
        Assert.True(host.CapAdd is null || host.CapAdd.Count == 0);
        Assert.Contains("no-new-privileges", host.SecurityOpt);
        Assert.Empty(host.Binds);
        Assert.Empty(host.Mounts);
        Assert.True(host.VolumesFrom is null || host.VolumesFrom.Count == 0);
        Assert.NotEqual("host", host.PidMode);
        Assert.NotEqual("host", host.IpcMode);
        Assert.Equal(RestartPolicyKindNo(), host.RestartPolicy.Name);
    }

    private static global::Docker.DotNet.Models.RestartPolicyKind RestartPolicyKindNo() => global::Docker.DotNet.Models.RestartPolicyKind.No;

    [Fact]
    public void Limits_memory_cpu_and_pids_and_passes_the_oci_runtime()
    {
        var host = DockerContainerSpec.Build(s_assignment, Settings(runtime: "runsc")).HostConfig;

        Assert.Equal(8L << 30, host.Memory);
        Assert.Equal(8L << 30, host.MemorySwap);
        Assert.Equal(4_000_000_000, host.NanoCPUs);
        Assert.Equal(4096, host.PidsLimit);
        Assert.Equal("runsc", host.Runtime);
        Assert.Null(DockerContainerSpec.Build(s_assignment, Settings()).HostConfig.Runtime);
    }

    [Fact]
    public void The_root_is_read_only_with_size_limited_tmpfs_scratch_unless_the_operator_wants_it_writable()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings());

        Assert.True(spec.HostConfig.ReadonlyRootfs);
        Assert.Equal(["/root/.cache", "/tmp"], spec.HostConfig.Tmpfs.Keys.Order(StringComparer.Ordinal));
        Assert.All(spec.HostConfig.Tmpfs.Values, o => Assert.Equal("rw,nosuid,nodev,mode=1777,size=1073741824", o));
        Assert.Empty(spec.HostConfig.Mounts);
        Assert.Empty(spec.HostConfig.Binds);
        Assert.Null(spec.User);

        var writable = DockerContainerSpec.Build(s_assignment, Settings() with { WritableRoot = true, User = "65534:65534" });
        Assert.False(writable.HostConfig.ReadonlyRootfs);
        Assert.Null(writable.HostConfig.Tmpfs);
        Assert.Equal("65534:65534", writable.User);
    }

    [Fact]
    public void Bridge_isolation_needs_inter_container_communication_off()
    {
        Assert.Null(DockerRuntime.BridgeIsolationProblem(new Dictionary<string, string> { [DockerRuntime.IccOption] = "false" }));
        Assert.Contains("run dockerd with --icc=false", DockerRuntime.BridgeIsolationProblem(new Dictionary<string, string> { [DockerRuntime.IccOption] = "true" }), StringComparison.Ordinal);
        Assert.NotNull(DockerRuntime.BridgeIsolationProblem(new Dictionary<string, string>()));
        Assert.NotNull(DockerRuntime.BridgeIsolationProblem(null));
    }

    [Fact]
    public void Bridge_mode_publishes_the_port_on_loopback_only()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings(DockerNetworkMode.Bridge));

        Assert.Equal("bridge", spec.HostConfig.NetworkMode);
        var binding = Assert.Single(Assert.Single(spec.HostConfig.PortBindings).Value);
        Assert.Equal("8000/tcp", spec.HostConfig.PortBindings.Single().Key);
        Assert.Equal("127.0.0.1", binding.HostIP);
        Assert.Equal("41000", binding.HostPort);
        Assert.False(spec.HostConfig.PublishAllPorts);
        Assert.Contains("8000/tcp", spec.ExposedPorts.Keys);
        Assert.Equal("8000", Env(spec.Env)["PORT"]);
    }

    [Fact]
    public void Host_mode_publishes_nothing_and_sets_port_to_the_host_port()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings(DockerNetworkMode.Host));

        Assert.Equal("host", spec.HostConfig.NetworkMode);
        Assert.Null(spec.HostConfig.PortBindings);
        Assert.Equal("41000", Env(spec.Env)["PORT"]);
    }

    [Fact]
    public void Labels_ownership_runs_the_pinned_image_and_passes_env_and_args()
    {
        var spec = DockerContainerSpec.Build(s_assignment, Settings());

        Assert.Equal("true", spec.Labels[DockerLabels.Managed]);
        Assert.Equal("n-node1", spec.Labels[DockerLabels.Node]);
        Assert.Equal("llm", spec.Labels[DockerLabels.Cluster]);
        Assert.Equal("llm-abc123", spec.Labels[DockerLabels.Replica]);
        Assert.Equal("3", spec.Labels[DockerLabels.Generation]);
        Assert.Equal("41000", spec.Labels[DockerLabels.HostPort]);
        Assert.Equal(Settings().ImageToRun, spec.Image);
        Assert.Equal("shoal-llm-abc123", spec.Name);
        Assert.Equal(["--max-len", "4096"], spec.Cmd);
        var env = Env(spec.Env);
        Assert.Equal("tiny", env["MODEL"]);
        Assert.Equal("llm-abc123", env["SHOAL_REPLICA_ID"]);
        Assert.Equal("llm", env["SHOAL_CLUSTER"]);
    }

    [Theory]
    [InlineData(1, 4, 16, 65536L)]
    [InlineData(2, 4, 16, 65536L)]
    [InlineData(1, 0, 8, 16384L)]
    public void Limits_are_the_replicas_share_of_the_node(int replicaGpus, int nodeGpus, int cores, long memoryMiB)
    {
        var limits = ResourceLimits.ShareOf(replicaGpus, nodeGpus, cores, memoryMiB, 4096);

        var share = nodeGpus == 0 ? 1.0 : replicaGpus / (double)nodeGpus;
        var usable = memoryMiB * 1024 * 1024 - Math.Min(ResourceLimits.ReservedMemoryBytes, memoryMiB * 1024 * 1024 / 10);
        Assert.Equal((long)(usable * share), limits.MemoryBytes);
        Assert.Equal((long)(cores * share * 1_000_000_000), limits.NanoCpus);
        Assert.Equal(4096, limits.PidsLimit);
    }
}
