using System.Reflection;
using Shoal.Agent.Connection;
using Shoal.Agent.Hardware;
using Shoal.Agent.Health;
using Shoal.Agent.Identity;
using Shoal.Agent.Replicas;
using Shoal.Agent.Runtimes;
using Shoal.Agent.Tunnels;
using Shoal.Agent.Runtimes.Docker;
using Shoal.Contracts;

namespace Shoal.Agent;

/// <summary>Runs one agent (<c>shoal agent</c>). Holds no static state, so several can run in one process.</summary>
public static partial class AgentHost
{
    /// <summary>
    /// Makes this process's idle thread-pool workers sleep at once instead of spinning (calling
    /// <c>sched_yield</c>) while they wait for work. An agent shares its node's CPUs with the
    /// replicas it runs, and every request in tunnel mode passes through it: spinning burns the
    /// CPU they need (measured in <c>docs/benchmarks.md</c>, two paired runs: 0.78× the agent's CPU
    /// per request). Process-wide and read when the thread pool starts, so only a
    /// process that is an agent and nothing else calls it (<c>shoal agent</c>), first thing. An
    /// explicit <c>DOTNET_ThreadPool_UnfairSemaphoreSpinLimit</c> in the environment wins.
    /// </summary>
    public static void PreferSleepingThreadPool()
    {
        const string Variable = "DOTNET_ThreadPool_UnfairSemaphoreSpinLimit";
        if (Environment.GetEnvironmentVariable(Variable) is not null) return;
        Environment.SetEnvironmentVariable(Variable, "0");
        AppContext.SetData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", 0);
    }

    /// <summary>
    /// Runs the agent until <paramref name="ct"/> is cancelled, then stops its replicas (unless
    /// <see cref="AgentOptions.StopReplicasOnShutdown"/> is false) and returns.
    /// </summary>
    /// <exception cref="AgentConfigurationException">
    /// An option is invalid, the node has neither a saved identity nor a token, or the token was refused.
    /// </exception>
    public static async Task RunAsync(AgentOptions options, ILoggerFactory loggerFactory, TimeProvider timeProvider, CancellationToken ct)
    {
        var logger = loggerFactory.CreateLogger(typeof(AgentHost).FullName!);
        var dataDir = Path.GetFullPath(options.DataDir ?? AgentOptions.DefaultDataDir);
        var identityStore = new NodeIdentityStore(dataDir);
        var identity = identityStore.Load();
        Validate(options);
        // Once registered the token is not needed: a token file already deleted is no error.
        var token = identity is null ? ReadToken(options) : null;
        if (identity is null && string.IsNullOrWhiteSpace(token))
        {
            throw new AgentConfigurationException(
                $"this node has no saved identity ({identityStore.FilePath} does not exist) and no provisioning token; run it once with --token, --token-file or $SHOAL_TOKEN (create one with 'shoal tokens create')");
        }
        var server = options.Server ?? identity?.Server ?? AgentOptions.DefaultServer;
        var connectUri = ServerAddress.ConnectUri(server);
        var simulated = options.SimulateGpus is { Length: > 0 } spec ? SimulatedGpus.Parse(spec) : null;

        try
        {
            // It holds the node secret and the replicas' logs: the agent's user only.
            if (!PrivateFiles.CreateDirectory(dataDir))
            {
                LogDataDirShared(logger, dataDir);
            }
            PrivateFiles.Restrict(identityStore.FilePath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new AgentConfigurationException($"cannot create the data dir {dataDir}: {ex.Message}", ex);
        }
        if (options.DockerNetwork == "host")
        {
            LogHostNetwork(logger);
        }
        if (identity is not null && (!string.IsNullOrWhiteSpace(options.Token) || !string.IsNullOrWhiteSpace(options.TokenFile)))
        {
            LogTokenIgnored(logger, identity.NodeId, identityStore.FilePath);
        }

        var gpus = simulated ?? await new GpuDetector(options.NvidiaSmiPath, loggerFactory.CreateLogger<GpuDetector>()).DetectAsync(ct);
        var nodeName = string.IsNullOrWhiteSpace(options.Name) ? Environment.MachineName : options.Name.Trim();
        var version = typeof(AgentHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;

        var runtimes = new List<IReplicaRuntime>();
        AgentConnection? connection = null;
        if (options.EnableProcessRuntime || options.Runtime == "process")
        {
            runtimes.Add(new ProcessRuntime(
                new ProcessRuntimeOptions
                {
                    Enabled = true,
                    Images = options.ProcessImages,
                    AllowedEnv = options.AllowEnv,
                    SimCommand = string.IsNullOrWhiteSpace(options.SimCommand) ? AgentOptions.DefaultSimCommand : options.SimCommand,
                    ReplicasDir = Path.Combine(dataDir, "replicas"),
                    MaxLogBytes = options.MaxReplicaLogBytes,
                    KeepReplicasOnExit = options.KeepReplicasOnExit,
                },
                timeProvider,
                loggerFactory.CreateLogger<ProcessRuntime>()));
        }

        // After process: an image the operator allow-listed as a local command runs as that command.
        using var docker = options.Runtime == "process" ? null : await ConnectDockerAsync(options, gpus, dataDir, () => connection?.NodeId ?? identity?.NodeId, loggerFactory, ct);
        if (docker is not null)
        {
            runtimes.Add(docker);
        }

        using var http = HttpReplicaProbe.CreateClient();
        var replicas = new ReplicaManager(
            runtimes,
            new HttpReplicaProbe(http, timeProvider),
            new ReplicaManagerOptions
            {
                StopGracePeriod = options.StopGracePeriod,
                RestartBackoffMin = options.RestartBackoffMin,
                RestartBackoffMax = options.RestartBackoffMax,
            },
            timeProvider,
            loggerFactory);

        string[] processImages = [.. runtimes.OfType<ProcessRuntime>().SelectMany(r => r.Images).Order(StringComparer.Ordinal)];
        HelloMessage Hello() => new()
        {
            NodeName = nodeName,
            Hardware = HardwareProbe.Describe(gpus, dataDir),
            Runtimes = replicas.RuntimeNames,
            Images = replicas.Images,
            ProcessImages = processImages,
            AllowedEnv = processImages.Length == 0 ? [] : [.. options.AllowEnv.Order(StringComparer.Ordinal)],
            Address = options.Address,
            Tunnel = !options.Direct,
            AgentVersion = version,
            AppliedRevision = replicas.AppliedRevision,
            Replicas = replicas.Snapshot(),
        };

        await using var tunnels = new TunnelManager(
            new TunnelOptions { IdlePerEdge = options.TunnelsPerEdge, AllowPlainOverNetwork = options.AllowPlainTunnels },
            replicas.WaitForReplicaPortAsync,
            timeProvider,
            loggerFactory);

        connection = new AgentConnection(
            new AgentConnectionOptions
            {
                ConnectUri = connectUri,
                Server = server,
                NodeName = nodeName,
                ProvisioningToken = token,
                ReconnectMin = options.ReconnectMin,
                ReconnectMax = options.ReconnectMax,
                ConnectTimeout = options.ConnectTimeout,
                EdgesChanged = options.Direct ? null : tunnels.Update,
            },
            identityStore,
            identity,
            replicas,
            Hello,
            timeProvider,
            loggerFactory.CreateLogger<AgentConnection>());

        var runtimeNames = string.Join(",", replicas.RuntimeNames);
        LogStarting(logger, nodeName, connectUri, gpus.Count, runtimeNames);
        using var imagesCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var imagesLoop = docker is null ? Task.CompletedTask : RefreshImagesLoopAsync(docker, timeProvider, logger, imagesCts.Token);
        // The control connection closes only after the tunnels have drained: the control plane marks
        // a node lost when it goes, and the edge then cuts every response still coming from it.
        using var stopConnection = new CancellationTokenSource();
        var running = connection.RunAsync(stopConnection.Token);
        try
        {
            try
            {
                await running.WaitAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                await tunnels.DisposeAsync();
                await stopConnection.CancelAsync();
                await running;
            }
        }
        finally
        {
            await stopConnection.CancelAsync();
            await tunnels.DisposeAsync();
            await imagesCts.CancelAsync();
            await imagesLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (options.StopReplicasOnShutdown)
            {
                LogStoppingReplicas(logger);
                await replicas.ShutdownAsync();
            }
            else
            {
                LogLeavingReplicas(logger);
            }
        }
        LogStopped(logger, nodeName);
    }

    private static async Task<DockerRuntime?> ConnectDockerAsync(
        AgentOptions options, IReadOnlyList<GpuInfo> gpus, string dataDir, Func<string?> nodeId, ILoggerFactory loggerFactory, CancellationToken ct)
    {
        var logger = loggerFactory.CreateLogger(typeof(AgentHost).FullName!);
        var endpoint = string.IsNullOrWhiteSpace(options.DockerHost) ? null : new Uri(options.DockerHost);
        var client = DockerRuntime.CreateClient(endpoint);
        var version = await DockerRuntime.ProbeAsync(client, TimeSpan.FromSeconds(5), ct);
        var where = options.DockerHost ?? "the default Docker endpoint";
        if (version is null)
        {
            client.Dispose();
            if (options.Runtime == "docker")
            {
                throw new AgentConfigurationException($"--runtime docker: no Docker engine answers at {where}; start dockerd or point --docker-host at it");
            }
            LogDockerAbsent(logger, where);
            return null;
        }
        var hardware = HardwareProbe.Describe(gpus, dataDir);
        var runtime = new DockerRuntime(client, new DockerRuntimeOptions
        {
            Network = options.DockerNetwork == "host" ? DockerNetworkMode.Host : DockerNetworkMode.Bridge,
            OciRuntime = string.IsNullOrWhiteSpace(options.OciRuntime) ? null : options.OciRuntime.Trim(),
            WritableRoot = options.DockerWritableRoot,
            User = string.IsNullOrWhiteSpace(options.DockerUser) ? null : options.DockerUser.Trim(),
            Gpus = gpus,
            CpuCores = hardware.CpuCores,
            MemoryMiB = hardware.MemoryMiB,
            NodeId = nodeId,
        }, loggerFactory.CreateLogger<DockerRuntime>());
        try
        {
            await runtime.RefreshImagesAsync(ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogDockerImagesFailed(logger, ex.Message);
        }
        LogDockerFound(logger, version, where, options.DockerNetwork, options.OciRuntime ?? "default");
        try
        {
            if (await runtime.CheckBridgeIsolationAsync(ct) is { } problem)
            {
                LogBridgeNotIsolated(logger, problem);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogBridgeNotIsolated(logger, "could not inspect the bridge network: " + ex.Message);
        }
        return runtime;
    }

    private static async Task RefreshImagesLoopAsync(DockerRuntime docker, TimeProvider time, ILogger logger, CancellationToken ct)
    {
        // Images pulled by hand count for placement too; pulls by the agent refresh at once.
        while (await time.TryDelayAsync(TimeSpan.FromSeconds(30), ct))
        {
            try
            {
                await docker.RefreshImagesAsync(ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // The engine may be restarting; the next round tries again.
                LogDockerImagesFailed(logger, ex.Message);
            }
        }
    }

    private static void Validate(AgentOptions options)
    {
        if (options.Runtime is not ("auto" or "docker" or "process"))
        {
            throw new AgentConfigurationException($"unknown runtime '{options.Runtime}': use auto, docker or process");
        }
        if (options.DockerNetwork is not ("bridge" or "host"))
        {
            throw new AgentConfigurationException($"unknown docker network mode '{options.DockerNetwork}': use bridge or host");
        }
        if (options.DockerNetwork == "host" && !options.AllowHostNetwork)
        {
            throw new AgentConfigurationException(
                "--docker-network host shares the host's network with every replica, its loopback included (this agent, the Docker engine's TCP socket, local databases, other tenants' replicas); start the agent with --allow-host-network to accept that");
        }
        foreach (var allowed in options.AllowEnv)
        {
            if (string.IsNullOrEmpty(allowed) || allowed.Length > 256 || !(char.IsAsciiLetter(allowed[0]) || allowed[0] == '_') || !allowed.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                throw new AgentConfigurationException($"--allow-env '{allowed}' is not an env name: use letters, digits and '_', not starting with a digit");
            }
        }
        if (options.DockerUser is { Length: > 0 } user && !IsUidGid(user.Trim()))
        {
            throw new AgentConfigurationException($"--docker-user '{user}' must be a numeric uid or uid:gid such as 65534:65534");
        }
        if (!string.IsNullOrWhiteSpace(options.Token) && !string.IsNullOrWhiteSpace(options.TokenFile))
        {
            throw new AgentConfigurationException("give the provisioning token once: --token (or $SHOAL_TOKEN) or --token-file, not both");
        }
        if (options.DockerHost is { Length: > 0 } dockerHost && !Uri.TryCreate(dockerHost, UriKind.Absolute, out _))
        {
            throw new AgentConfigurationException($"--docker-host '{dockerHost}' is not a URI such as unix:///var/run/docker.sock or tcp://127.0.0.1:2375");
        }
        if (options.ReconnectMin <= TimeSpan.Zero || options.ReconnectMax < options.ReconnectMin)
        {
            throw new AgentConfigurationException($"invalid reconnect back-off: min {options.ReconnectMin} must be positive and no more than max {options.ReconnectMax}");
        }
        if (options.RestartBackoffMin <= TimeSpan.Zero || options.RestartBackoffMax < options.RestartBackoffMin)
        {
            throw new AgentConfigurationException($"invalid restart back-off: min {options.RestartBackoffMin} must be positive and no more than max {options.RestartBackoffMax}");
        }
        if (options.ConnectTimeout <= TimeSpan.Zero)
        {
            throw new AgentConfigurationException("the connect timeout must be positive");
        }
        if (options.StopGracePeriod < TimeSpan.Zero)
        {
            throw new AgentConfigurationException("the stop grace period cannot be negative");
        }
        if (options.TunnelsPerEdge is < 1 or > 64)
        {
            throw new AgentConfigurationException("tunnels per edge must be between 1 and 64");
        }
        if (string.IsNullOrWhiteSpace(options.Address))
        {
            throw new AgentConfigurationException("the advertised address cannot be empty");
        }
        if (options.Name is { } name && name.Trim().Length > 253)
        {
            throw new AgentConfigurationException("the node name is longer than 253 characters");
        }
        foreach (var (image, commandLine) in options.ProcessImages)
        {
            if (string.IsNullOrWhiteSpace(image))
            {
                throw new AgentConfigurationException("a process image name cannot be empty");
            }
            IReadOnlyList<string> words;
            try
            {
                words = CommandLine.Split(commandLine ?? "");
            }
            catch (FormatException ex)
            {
                throw new AgentConfigurationException($"invalid command line for process image {image}: {ex.Message}", ex);
            }
            if (words.Count == 0)
            {
                throw new AgentConfigurationException($"the command line for process image {image} is empty");
            }
        }
        if (options.SimCommand is { } sim && !string.IsNullOrWhiteSpace(sim))
        {
            try
            {
                _ = CommandLine.Split(sim);
            }
            catch (FormatException ex)
            {
                throw new AgentConfigurationException($"invalid sim command: {ex.Message}", ex);
            }
        }
    }

    private static bool IsUidGid(string user)
    {
        var parts = user.Split(':');
        return parts.Length is 1 or 2 && parts.All(p => p.Length is > 0 and <= 10 && p.All(char.IsAsciiDigit));
    }

    /// <summary>The provisioning token: <see cref="AgentOptions.Token"/>, else the contents of <see cref="AgentOptions.TokenFile"/>.</summary>
    private static string? ReadToken(AgentOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.Token) || string.IsNullOrWhiteSpace(options.TokenFile))
        {
            return options.Token?.Trim();
        }
        try
        {
            var info = new FileInfo(options.TokenFile);
            if (info.Exists && info.Length > 4096)
            {
                throw new AgentConfigurationException($"--token-file {options.TokenFile} is larger than a token (4096 bytes)");
            }
            var token = File.ReadAllText(options.TokenFile).Trim();
            if (token.Length == 0)
            {
                throw new AgentConfigurationException($"--token-file {options.TokenFile} is empty");
            }
            return token;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new AgentConfigurationException($"cannot read --token-file {options.TokenFile}: {ex.Message}", ex);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The data dir {DataDir} is shared (sticky) or not ours to restrict: node.json and the replica logs are 0600, but use a private directory (0700) of the agent's user")]
    private static partial void LogDataDirShared(ILogger logger, string dataDir);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Docker bridge networking: {Problem}")]
    private static partial void LogBridgeNotIsolated(ILogger logger, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Host networking (--allow-host-network): every replica shares this host's network, its loopback included; replicas of different clusters can reach each other and every local service")]
    private static partial void LogHostNetwork(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {NodeName} starting: server {Uri}, {GpuCount} GPU(s), runtimes [{Runtimes}]")]
    private static partial void LogStarting(ILogger logger, string nodeName, Uri uri, int gpuCount, string runtimes);

    [LoggerMessage(Level = LogLevel.Information, Message = "No Docker engine at {Where}; the docker runtime is off")]
    private static partial void LogDockerAbsent(ILogger logger, string where);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not list the Docker images: {Message}")]
    private static partial void LogDockerImagesFailed(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker engine {Version} at {Where}: docker runtime on ({Network} networking, OCI runtime {OciRuntime})")]
    private static partial void LogDockerFound(ILogger logger, string version, string where, string network, string ociRuntime);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} already has an identity in {IdentityFile}; the provisioning token is not used")]
    private static partial void LogTokenIgnored(ILogger logger, string nodeId, string identityFile);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping replicas")]
    private static partial void LogStoppingReplicas(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Leaving replicas running")]
    private static partial void LogLeavingReplicas(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {NodeName} stopped")]
    private static partial void LogStopped(ILogger logger, string nodeName);
}
