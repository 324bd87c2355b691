using System.Globalization;
using System.Net;
using System.Text;
using Docker.DotNet;
using Docker.DotNet.Models;
using Shoal.Contracts;

namespace Shoal.Agent.Runtimes.Docker;

/// <summary>Settings of <see cref="DockerRuntime"/>.</summary>
public sealed class DockerRuntimeOptions
{
    /// <summary>The engine's API address, such as <c>unix:///var/run/docker.sock</c>. Default: <c>DOCKER_HOST</c>, else the local socket.</summary>
    public Uri? Endpoint { get; set; }

    /// <summary>OCI runtime for every container (<c>kata-runtime</c>, <c>runsc</c>); null for the engine's default.</summary>
    public string? OciRuntime { get; set; }

    /// <summary>Bridge (port published on 127.0.0.1) or host networking (<c>PORT</c> set). Default: bridge.</summary>
    public DockerNetworkMode Network { get; set; } = DockerNetworkMode.Bridge;

    /// <summary>A writable root file system for containers instead of a read-only one with tmpfs scratch. Default: false.</summary>
    public bool WritableRoot { get; set; }

    /// <summary>Size of each tmpfs scratch mount of a read-only container. Default: 1 GiB.</summary>
    public long ScratchBytes { get; set; } = DockerContainerSpec.DefaultScratchBytes;

    /// <summary>The user every workload runs as (<c>uid[:gid]</c>), or null for the image's own. Default: null.</summary>
    public string? User { get; set; }

    /// <summary>Most processes a replica may have. Default: 4096.</summary>
    public long PidsLimit { get; set; } = 4096;

    /// <summary>The node's GPUs; real ones are handed to containers by UUID.</summary>
    public IReadOnlyList<GpuInfo> Gpus { get; set; } = [];

    public int CpuCores { get; set; } = Environment.ProcessorCount;

    public long MemoryMiB { get; set; }

    /// <summary>The node id (known once registered); it goes into every container's labels.</summary>
    public required Func<string?> NodeId { get; set; }
}

/// <summary>
/// Runs replicas as containers through the Docker Engine API. Containers carry Shoal labels; the
/// runtime only ever touches containers labelled with its node, re-adopts them after an agent
/// restart, and leaves every other container alone. Containers outlive the agent.
/// </summary>
public sealed partial class DockerRuntime : IReplicaRuntime, IDisposable
{
    private readonly IDockerClient _client;
    private readonly DockerRuntimeOptions _options;
    private readonly ILogger<DockerRuntime> _logger;
    private readonly SemaphoreSlim _imagesLock = new(1, 1);
    private string[] _images = [];
    private int _imagesVersion;

    public DockerRuntime(IDockerClient client, DockerRuntimeOptions options, ILogger<DockerRuntime> logger)
    {
        _client = client;
        _options = options;
        _logger = logger;
    }

    /// <summary>A client for the engine at <paramref name="endpoint"/> (or the default one).</summary>
    public static IDockerClient CreateClient(Uri? endpoint)
    {
        var builder = new DockerClientBuilder();
        if (endpoint is not null)
        {
            builder = builder.WithEndpoint(endpoint);
        }
        return builder.Build();
    }

    /// <summary>Whether the engine answers within <paramref name="timeout"/>; the engine's version, or null.</summary>
    public static async Task<string?> ProbeAsync(IDockerClient client, TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            var version = await client.System.GetVersionAsync(cts.Token);
            return version.Version ?? "unknown";
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            return null;
        }
    }

    public string Name => "docker";

    public IReadOnlyCollection<string> Images => Volatile.Read(ref _images);

    /// <summary>Bumped whenever <see cref="Images"/> changes.</summary>
    public int ImagesVersion => Volatile.Read(ref _imagesVersion);

    public bool PullsImages => true;

    public bool KeepsReplicasOnAgentExit => true;

    public bool CanRun(string image) => !string.IsNullOrWhiteSpace(image);

    public string DescribeRejection(string image) => $"image {image} cannot run on the docker runtime";

    /// <summary>The engine's option that lets containers on a bridge reach each other; <c>dockerd --icc=false</c> sets it to false.</summary>
    public const string IccOption = "com.docker.network.bridge.enable_icc";

    /// <summary>
    /// Why containers on the engine's default bridge, with these options, can reach each other (so
    /// replicas of different clusters could), or null when inter-container communication is off.
    /// </summary>
    public static string? BridgeIsolationProblem(IDictionary<string, string>? bridgeOptions) =>
        bridgeOptions is not null && bridgeOptions.TryGetValue(IccOption, out var icc) && string.Equals(icc, "false", StringComparison.OrdinalIgnoreCase)
            ? null
            : "inter-container communication is on: replicas of different clusters can reach each other over the bridge; run dockerd with --icc=false";

    /// <summary>
    /// In bridge mode, what keeps replicas of different clusters apart that is missing (checked on the
    /// engine's default bridge network), or null when nothing is; always null with host networking.
    /// </summary>
    public async Task<string?> CheckBridgeIsolationAsync(CancellationToken ct)
    {
        if (_options.Network != DockerNetworkMode.Bridge)
        {
            return null;
        }
        try
        {
            var bridge = await _client.Networks.InspectNetworkAsync("bridge", ct);
            return BridgeIsolationProblem(bridge.Options);
        }
        catch (DockerApiException ex) when (ex.StatusCode == HttpStatusCode.NotFound)
        {
            return "the engine has no default bridge network (dockerd --bridge=none): replicas cannot start in bridge mode";
        }
    }

    /// <summary>Reads the images on the node (tags and digests), for placement to prefer nodes that have them.</summary>
    public async Task RefreshImagesAsync(CancellationToken ct)
    {
        await _imagesLock.WaitAsync(ct);
        try
        {
            var list = await _client.Images.ListImagesAsync(new ImagesListParameters { All = false }, ct);
            var names = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var image in list)
            {
                foreach (var tag in image.RepoTags ?? [])
                {
                    if (tag is "<none>:<none>")
                    {
                        continue;
                    }
                    names.Add(tag);
                    if (tag.EndsWith(":latest", StringComparison.Ordinal))
                    {
                        names.Add(tag[..^":latest".Length]);
                    }
                }
                foreach (var digest in image.RepoDigests ?? [])
                {
                    if (!digest.StartsWith("<none>", StringComparison.Ordinal))
                    {
                        names.Add(digest);
                    }
                }
            }
            var array = names.ToArray();
            if (!array.SequenceEqual(_images, StringComparer.Ordinal))
            {
                Volatile.Write(ref _images, array);
                Interlocked.Increment(ref _imagesVersion);
            }
        }
        finally
        {
            _imagesLock.Release();
        }
    }

    /// <summary>
    /// Makes the image present and returns the exact image to run: the pinned digest when the
    /// assignment has one, else the repo digest of the reference (image id for a local image).
    /// A running container of this replica is re-adopted as it is, without a pull.
    /// </summary>
    public async Task<string?> PrepareAsync(Assignment assignment, IProgress<double> progress, CancellationToken ct)
    {
        var nodeId = RequireNodeId();
        var existing = await FindContainersAsync(assignment.ReplicaId, nodeId, ct);
        var adoptable = existing.FirstOrDefault(c => IsAdoptable(c, assignment));
        if (adoptable is not null && adoptable.Labels.TryGetValue(DockerLabels.Image, out var running))
        {
            return running;
        }

        var pinned = assignment.ImageDigest ?? (assignment.Image.Contains('@', StringComparison.Ordinal) ? assignment.Image : null);
        if (pinned is not null)
        {
            if (await TryInspectImageAsync(pinned, ct) is not null)
            {
                return pinned;
            }
            if (pinned.StartsWith("sha256:", StringComparison.Ordinal))
            {
                // An image id pins a local image: the node has it under the cluster's reference, or it has not.
                var local = await TryInspectImageAsync(assignment.Image, ct);
                if (local is not null && local.ID == pinned)
                {
                    return pinned;
                }
                await PullAsync(ImageReference.Parse(assignment.Image), assignment, progress, ct);
                var pulled = await TryInspectImageAsync(assignment.Image, ct);
                if (pulled?.ID != pinned)
                {
                    throw new ReplicaStartException($"image {assignment.Image} on this node is not the pinned image {pinned}");
                }
                return pinned;
            }
            await PullAsync(ImageReference.Parse(pinned), assignment, progress, ct);
            return pinned;
        }

        var image = await TryInspectImageAsync(assignment.Image, ct);
        if (image is null)
        {
            await PullAsync(ImageReference.Parse(assignment.Image), assignment, progress, ct);
            image = await TryInspectImageAsync(assignment.Image, ct)
                ?? throw new ReplicaStartException($"image {assignment.Image} was pulled but the engine does not show it");
        }
        return DigestOf(image, ImageReference.Parse(assignment.Image));
    }

    /// <summary>The repo digest of <paramref name="reference"/>'s repository when the image came from a registry, else its image id.</summary>
    public static string DigestOf(ImageInspectResponse image, ImageReference reference)
    {
        foreach (var repoDigest in image.RepoDigests ?? [])
        {
            var at = repoDigest.IndexOf('@', StringComparison.Ordinal);
            if (at > 0 && SameRepository(repoDigest[..at], reference.Repository))
            {
                return repoDigest;
            }
        }
        return image.ID;
    }

    private static bool SameRepository(string a, string b)
    {
        static string Normalize(string repo)
        {
            foreach (var prefix in (string[])["docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"])
            {
                if (repo.StartsWith(prefix, StringComparison.Ordinal))
                {
                    repo = repo[prefix.Length..];
                    break;
                }
            }
            return repo.StartsWith("library/", StringComparison.Ordinal) ? repo["library/".Length..] : repo;
        }
        return string.Equals(Normalize(a), Normalize(b), StringComparison.Ordinal);
    }

    private async Task PullAsync(ImageReference reference, Assignment assignment, IProgress<double> progress, CancellationToken ct)
    {
        var name = reference.ToString();
        LogPulling(assignment.ReplicaId, name);
        var tracker = new PullProgressTracker();
        var messages = new Progress<JSONMessage>();
        var auth = assignment.RegistryAuth is { } creds
            ? new AuthConfig { Username = creds.Username, Password = creds.Password, ServerAddress = creds.Server ?? reference.Registry }
            : new AuthConfig();
        try
        {
            // The engine streams progress; Progress<T> would post it to the thread pool out of order, so track inline.
            await _client.Images.CreateImageAsync(
                new ImagesCreateParameters { FromImage = reference.Repository, Tag = reference.PullTag },
                auth,
                new InlineProgress<JSONMessage>(m =>
                {
                    if (tracker.Add(m) is { } percent)
                    {
                        progress.Report(percent);
                    }
                }),
                ct);
        }
        catch (DockerApiException ex)
        {
            throw new ReplicaStartException(DescribePullFailure(reference, ex.StatusCode, ReadMessage(ex.ResponseBody)), ex);
        }
        catch (HttpRequestException ex)
        {
            throw new ReplicaStartException($"pull of {reference} failed: the Docker engine is unreachable ({ex.Message})", ex);
        }
        if (tracker.Error is { } error)
        {
            throw new ReplicaStartException(DescribePullFailure(reference, HttpStatusCode.OK, error));
        }
        progress.Report(100);
        _ = RefreshImagesQuietlyAsync();
        LogPulled(assignment.ReplicaId, name);
    }

    /// <summary>A pull failure in words: no such image or tag, access denied, or the registry unreachable.</summary>
    public static string DescribePullFailure(ImageReference reference, HttpStatusCode status, string message)
    {
        var text = message.Trim();
        var lower = text.ToLowerInvariant();
        string kind;
        if (lower.Contains("manifest unknown", StringComparison.Ordinal) || (lower.Contains("manifest for", StringComparison.Ordinal) && lower.Contains("not found", StringComparison.Ordinal)))
        {
            kind = $"no such tag: {reference}";
        }
        else if (lower.Contains("unauthorized", StringComparison.Ordinal) || lower.Contains("authentication required", StringComparison.Ordinal)
            || lower.Contains("access denied", StringComparison.Ordinal) || lower.Contains("auth credentials", StringComparison.Ordinal) || lower.Contains("denied", StringComparison.Ordinal) || status == HttpStatusCode.Unauthorized)
        {
            kind = $"access denied to {reference.Repository} (wrong or missing registry credentials)";
        }
        else if (lower.Contains("name unknown", StringComparison.Ordinal) || lower.Contains("repository does not exist", StringComparison.Ordinal)
            || lower.Contains("not found", StringComparison.Ordinal) || status == HttpStatusCode.NotFound)
        {
            kind = $"no such image: {reference.Repository}";
        }
        else if (lower.Contains("invalid reference", StringComparison.Ordinal) || status == HttpStatusCode.BadRequest)
        {
            kind = $"bad image reference: {reference}";
        }
        else if (lower.Contains("dial tcp", StringComparison.Ordinal) || lower.Contains("no such host", StringComparison.Ordinal)
            || lower.Contains("connection refused", StringComparison.Ordinal) || lower.Contains("timeout", StringComparison.Ordinal))
        {
            kind = $"registry {reference.Registry} unreachable";
        }
        else
        {
            kind = $"pull of {reference} failed";
        }
        return $"image pull failed: {kind}: {text}";
    }

    private static string ReadMessage(string? body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return "";
        }
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && doc.RootElement.TryGetProperty("message", out var m))
            {
                return m.GetString() ?? body;
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return body;
    }

    public async Task<IReplicaInstance> StartAsync(Assignment assignment, CancellationToken ct)
    {
        var nodeId = RequireNodeId();
        var image = assignment.ImageDigest ?? assignment.Image;
        try
        {
            IReplicaInstance? adopted = null;
            foreach (var c in await FindContainersAsync(assignment.ReplicaId, nodeId, ct))
            {
                if (adopted is null && IsAdoptable(c, assignment)
                    && int.TryParse(Label(c, DockerLabels.HostPort), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
                {
                    adopted = new DockerReplicaInstance(_client, c.ID, port, _logger).Watch();
                    LogAdopted(assignment.ReplicaId, c.ID, port);
                    continue;
                }
                // An exited one from an earlier run, or one of an older generation: replaced.
                await RemoveQuietlyAsync(c.ID, ct);
            }
            if (adopted is not null)
            {
                return adopted;
            }

            var hostPort = ProcessRuntime.FreeLoopbackPort();
            var settings = new ContainerSettings
            {
                NodeId = nodeId,
                ImageToRun = image,
                HostPort = hostPort,
                Network = _options.Network,
                OciRuntime = _options.OciRuntime,
                WritableRoot = _options.WritableRoot,
                ScratchBytes = _options.ScratchBytes,
                User = _options.User,
                Limits = ResourceLimits.ShareOf(assignment.GpuIndexes.Length, _options.Gpus.Count, _options.CpuCores, _options.MemoryMiB, _options.PidsLimit),
                GpuUuids = GpuUuids(assignment),
            };
            var created = await _client.Containers.CreateContainerAsync(DockerContainerSpec.Build(assignment, settings), ct);
            var instance = new DockerReplicaInstance(_client, created.ID, hostPort, _logger);
            try
            {
                await _client.Containers.StartContainerAsync(created.ID, new ContainerStartParameters(), ct);
            }
            catch
            {
                await instance.RemoveAsync();
                await instance.DisposeAsync();
                throw;
            }
            LogStarted(assignment.ReplicaId, created.ID, image, hostPort);
            return instance.Watch();
        }
        catch (DockerApiException ex)
        {
            throw new ReplicaStartException($"container start failed: {ReadMessage(ex.ResponseBody)}", ex);
        }
        catch (HttpRequestException ex)
        {
            throw new ReplicaStartException($"container start failed: the Docker engine is unreachable ({ex.Message})", ex);
        }
    }

    private List<string> GpuUuids(Assignment assignment)
    {
        var uuids = new List<string>();
        foreach (var index in assignment.GpuIndexes)
        {
            var gpu = _options.Gpus.FirstOrDefault(g => g.Index == index);
            if (gpu is null || gpu.Simulated)
            {
                return [];
            }
            uuids.Add(gpu.Uuid);
        }
        return uuids;
    }

    /// <summary>Removes this node's labelled containers whose replica is not in <paramref name="keep"/>; touches nothing else.</summary>
    public async Task RemoveOrphansAsync(IReadOnlySet<string> keep, CancellationToken ct)
    {
        if (_options.NodeId() is not { } nodeId)
        {
            return;
        }
        var containers = await _client.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = LabelFilter(DockerLabels.Managed + "=true", DockerLabels.Node + "=" + nodeId),
        }, ct);
        foreach (var c in containers)
        {
            if (!IsOurs(c, nodeId) || Label(c, DockerLabels.Replica) is not { } replica || keep.Contains(replica))
            {
                continue;
            }
            LogRemovingOrphan(replica, c.ID);
            await RemoveQuietlyAsync(c.ID, ct);
        }
    }

    /// <summary>Streams the output of the replica's container (stdout and stderr, as written).</summary>
    public async Task StreamLogsAsync(string replicaId, bool follow, int? tail, Func<string, Task> write, CancellationToken ct)
    {
        var nodeId = RequireNodeId();
        var containers = await FindContainersAsync(replicaId, nodeId, ct);
        var container = containers.OrderByDescending(c => c.State == "running").ThenByDescending(c => c.Created).FirstOrDefault()
            ?? throw new IOException($"replica {replicaId} has no container on this node");
        using var stream = await _client.Containers.GetContainerLogsAsync(container.ID, new ContainerLogsParameters
        {
            ShowStdout = true,
            ShowStderr = true,
            Follow = follow,
            Tail = tail is { } t ? t.ToString(CultureInfo.InvariantCulture) : "all",
        }, ct);
        var buffer = new byte[16 * 1024];
        var decoder = Encoding.UTF8.GetDecoder();
        var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        while (true)
        {
            var read = await stream.ReadOutputAsync(buffer, 0, buffer.Length, ct);
            if (read.EOF)
            {
                break;
            }
            var n = decoder.GetChars(buffer, 0, read.Count, chars, 0);
            if (n > 0)
            {
                await write(new string(chars, 0, n));
            }
        }
    }

    private async Task<IList<ContainerListResponse>> FindContainersAsync(string replicaId, string nodeId, CancellationToken ct)
    {
        var list = await _client.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = LabelFilter(DockerLabels.Managed + "=true", DockerLabels.Node + "=" + nodeId, DockerLabels.Replica + "=" + replicaId),
        }, ct);
        // The engine filtered already; checking again costs nothing and guards the one rule that matters.
        return [.. list.Where(c => IsOurs(c, nodeId) && Label(c, DockerLabels.Replica) == replicaId)];
    }

    private static string? Label(ContainerListResponse c, string key) =>
        c.Labels is not null && c.Labels.TryGetValue(key, out var value) ? value : null;

    private static bool IsOurs(ContainerListResponse c, string nodeId) =>
        c.Labels is not null && Label(c, DockerLabels.Managed) == "true" && Label(c, DockerLabels.Node) == nodeId;

    private static bool IsAdoptable(ContainerListResponse c, Assignment assignment) =>
        c.State == "running"
        && Label(c, DockerLabels.Generation) == assignment.Generation.ToString(CultureInfo.InvariantCulture)
        && (assignment.ImageDigest is null || Label(c, DockerLabels.Image) == assignment.ImageDigest);

    private static Dictionary<string, IDictionary<string, bool>> LabelFilter(params string[] labels) => new(StringComparer.Ordinal)
    {
        ["label"] = labels.ToDictionary(l => l, _ => true, StringComparer.Ordinal),
    };

    private async Task<ImageInspectResponse?> TryInspectImageAsync(string reference, CancellationToken ct)
    {
        try
        {
            return await _client.Images.InspectImageAsync(reference, ct);
        }
        catch (DockerImageNotFoundException)
        {
            return null;
        }
        catch (DockerApiException ex) when (ex.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.BadRequest)
        {
            return null;
        }
    }

    private async Task RemoveQuietlyAsync(string id, CancellationToken ct)
    {
        try
        {
            await _client.Containers.RemoveContainerAsync(id, new ContainerRemoveParameters { Force = true }, ct);
        }
        catch (DockerContainerNotFoundException)
        {
        }
        catch (DockerApiException ex) when (ex.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Conflict)
        {
        }
    }

    private async Task RefreshImagesQuietlyAsync()
    {
        try
        {
            await RefreshImagesAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is DockerApiException or HttpRequestException or IOException)
        {
            LogImagesRefreshFailed(ex.Message);
        }
    }

    private string RequireNodeId() =>
        _options.NodeId() ?? throw new ReplicaStartException("the node has no id yet (not registered)");

    public void Dispose()
    {
        _imagesLock.Dispose();
        _client.Dispose();
    }

    /// <summary>An <see cref="IProgress{T}"/> that runs its handler on the reporting thread, in order.</summary>
    private sealed class InlineProgress<T>(Action<T> handler) : IProgress<T>
    {
        public void Report(T value) => handler(value);
    }
}
