using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Cli.Parsing;
using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal deploy NAME --image IMG --gpu TYPE …</c>: creates a cluster, and with <c>--wait</c> follows it until ready.</summary>
public sealed class DeployCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name (a DNS label, e.g. demo)" };

    private static readonly Option<string> s_imageOption = new("--image")
    {
        Description = "Container image to run (e.g. vllm/vllm-openai:latest, or shoal/sim)",
        Required = true,
    };

    private static readonly Option<string> s_gpuOption = new("--gpu")
    {
        Description = "GPU type each replica runs on (e.g. rtx-4090; see `shoal gpu-types`)",
        Required = true,
    };

    private static readonly Option<int?> s_gpuCountOption = CommonOptions.CreateIntOption("--gpu-count", "GPUs per replica (default 1)", 1, 64);

    private static readonly Option<int?> s_replicasOption = CommonOptions.CreateIntOption("--replicas", "Number of replicas (default 1)", 0);

    private static readonly Option<int?> s_portOption = CommonOptions.CreateIntOption("--port", "Port the container listens on (default 8000)", 1, 65535);

    private static readonly Option<Dictionary<string, string>> s_envOption = CommonOptions.CreateEnvOption("Environment variable for the replicas, KEY=VALUE; repeat for more");

    private static readonly Option<string[]> s_secretEnvOption = CommonOptions.CreateSecretEnvOption(
        "Secret environment variable, NAME=VALUE or NAME (value from $NAME): encrypted at rest, shown as ***, sent only to nodes running the cluster; repeat for more");

    private static readonly Option<string[]> s_argOption = new("--arg")
    {
        Description = "Argument passed to the container; repeat for more (use --arg=--flag for values starting with '-')",
        Arity = ArgumentArity.ZeroOrMore,
    };

    private static readonly Option<string[]> s_modelOption = new("--model")
    {
        Description = "Model name the cluster serves on the edge's /v1 facade (routed by the request's \"model\"); repeat for more (default: what its replicas list on /v1/models)",
        Arity = ArgumentArity.ZeroOrMore,
    };

    private static readonly Option<string?> s_healthPathOption = CreateHealthPathOption();

    private static readonly Option<string?> s_routingOption = CreateRoutingOption();

    private static readonly Option<string?> s_projectOption = new("--project") { Description = "The project that owns the cluster (default: your key's project)" };

    private static readonly Option<bool> s_publicOption = new("--public")
    {
        Description = "Let anyone call the endpoint without a key (default: only endpoint keys of the cluster's project)",
    };

    private static readonly Option<TimeSpan?> s_initialDelayOption = CreateInitialDelayOption();

    private static readonly Option<TimeSpan?> s_drainTimeoutOption = CreateDrainTimeoutOption();

    private static readonly Option<TimeSpan?> s_progressDeadlineOption = CreateProgressDeadlineOption();

    private static readonly Option<TimeSpan?> s_firstByteTimeoutOption = CreateFirstByteTimeoutOption();

    private static readonly Option<TimeSpan?> s_queueTimeoutOption = CommonOptions.CreateDurationOption("--queue-timeout",
        "How long the edge holds a request while no replica is ready, before 503 (default 30s, at most 5m)", TimeSpan.Zero, TimeSpan.FromSeconds(ClusterSpec.MaxQueueTimeoutSeconds));

    private static readonly Option<bool> s_waitOption = new("--wait")
    {
        Description = "Wait until every replica is ready, showing progress",
    };

    private static readonly TimeSpan s_defaultTimeout = TimeSpan.FromMinutes(5);

    private static readonly Option<TimeSpan?> s_timeoutOption =
        CommonOptions.CreateDurationOption("--timeout", "How long --wait waits, default 5m", TimeSpan.Zero, TimeSpan.FromDays(1));

    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    private static readonly Option<string?> s_registryUserOption = new("--registry-user")
    {
        Description = "User for a private registry; the password is read from $SHOAL_REGISTRY_PASSWORD (kept as a secret)",
    };

    private static readonly Option<string?> s_registryServerOption = new("--registry-server")
    {
        Description = "Registry host the credentials are for (default: the image's registry)",
    };

    private static readonly Option<string[]> s_nodeLabelOption = new("--node-label")
    {
        Description = "Label a node must have to run the replicas (repeatable); 'none' for no label. Default: 'trusted' when the cluster has secrets (registry credentials), else none",
    };

    private static readonly AutoscaleOptions s_autoscale = new();

    private static readonly PriceOptions s_price = new();

    /// <summary>The <c>--node-label</c> value that asks for no label even when the cluster has secrets.</summary>
    public const string NoNodeLabel = "none";

    /// <summary>Environment variable with the registry password, so it stays out of the command line and shell history.</summary>
    public const string RegistryPasswordVariable = "SHOAL_REGISTRY_PASSWORD";

    public DeployCommand(CliContext context)
        : base("deploy", "Deploy a cluster: one image, one GPU type, N replicas, one endpoint", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
        Options.Add(s_imageOption);
        Options.Add(s_gpuOption);
        Options.Add(s_gpuCountOption);
        Options.Add(s_replicasOption);
        Options.Add(s_portOption);
        Options.Add(s_envOption);
        Options.Add(s_secretEnvOption);
        Options.Add(s_argOption);
        Options.Add(s_modelOption);
        Options.Add(s_healthPathOption);
        Options.Add(s_routingOption);
        Options.Add(s_projectOption);
        Options.Add(s_publicOption);
        Options.Add(s_initialDelayOption);
        Options.Add(s_drainTimeoutOption);
        Options.Add(s_firstByteTimeoutOption);
        Options.Add(s_progressDeadlineOption);
        Options.Add(s_queueTimeoutOption);
        Options.Add(s_waitOption);
        Options.Add(s_timeoutOption);
        Options.Add(s_registryUserOption);
        Options.Add(s_nodeLabelOption);
        Options.Add(s_registryServerOption);
        s_autoscale.AddTo(this);
        s_price.AddTo(this);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var env = result.GetValue(s_envOption) ?? [];
        var args = result.GetValue(s_argOption) ?? [];
        var healthPath = result.GetValue(s_healthPathOption);
        var initialDelay = result.GetValue(s_initialDelayOption);
        if (!EnvParser.TryParseSecret(result.GetValue(s_secretEnvOption) ?? [], Context.GetEnvironmentVariable, out var secretEnv, out var secretError))
        {
            Interaction.DisplayError(secretError!);
            return ExitCodes.InvalidInput;
        }
        RegistryCredentials? registryAuth = null;
        if (result.GetValue(s_registryUserOption) is { } registryUser)
        {
            var password = Context.GetEnvironmentVariable(RegistryPasswordVariable);
            if (string.IsNullOrEmpty(password))
            {
                Interaction.DisplayError($"--registry-user needs the password in ${RegistryPasswordVariable}");
                return ExitCodes.InvalidInput;
            }
            registryAuth = new RegistryCredentials { Username = registryUser, Password = password, Server = result.GetValue(s_registryServerOption) };
        }
        var request = new CreateClusterRequest
        {
            Name = result.GetValue(s_nameArgument),
            Image = result.GetValue(s_imageOption),
            Gpu = result.GetValue(s_gpuOption),
            GpuCount = result.GetValue(s_gpuCountOption),
            Replicas = result.GetValue(s_replicasOption),
            Port = result.GetValue(s_portOption),
            Env = env.Count == 0 ? null : env,
            SecretEnv = secretEnv.Count == 0 ? null : secretEnv,
            Args = args.Length == 0 ? null : args,
            Health = healthPath is null && initialDelay is null ? null : new HealthCheckSpec
            {
                Path = healthPath ?? new HealthCheckSpec().Path,
                InitialDelayMs = initialDelay is { } delay ? (int)delay.TotalMilliseconds : 0,
            },
            DrainTimeoutSeconds = result.GetValue(s_drainTimeoutOption) is { } drain ? (int)Math.Ceiling(drain.TotalSeconds) : null,
            FirstByteTimeoutSeconds = result.GetValue(s_firstByteTimeoutOption) is { } firstByte ? (int)Math.Ceiling(firstByte.TotalSeconds) : null,
            ProgressDeadlineSeconds = result.GetValue(s_progressDeadlineOption) is { } deadline ? (int)Math.Ceiling(deadline.TotalSeconds) : null,
            RegistryAuth = registryAuth,
            NodeLabels = result.GetValue(s_nodeLabelOption) is { Length: > 0 } labels
                ? labels.Where(l => l != NoNodeLabel).ToArray()
                : null,
            Routing = result.GetValue(s_routingOption),
            Project = result.GetValue(s_projectOption),
            Public = result.GetValue(s_publicOption) ? true : null,
            QueueTimeoutSeconds = result.GetValue(s_queueTimeoutOption) is { } queueTimeout ? (int)Math.Ceiling(queueTimeout.TotalSeconds) : null,
            Autoscale = s_autoscale.Read(result),
            MaxHeld = result.GetValue(s_autoscale.MaxHeld),
            Models = result.GetValue(s_modelOption) is { Length: > 0 } models ? models : null,
            Price = s_price.Read(result),
        };

        var cluster = await client.CreateClusterAsync(request, ct);
        if (!result.GetValue(s_waitOption))
        {
            if (IsJson)
            {
                Interaction.WriteJson(cluster, ShoalJsonContext.Default.ClusterDto);
                return ExitCodes.Success;
            }

            Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
                $"deployed {cluster.Name}: {cluster.Replicas} replica(s) of {cluster.Image} on {Formats.ClusterGpu(cluster)} (generation {cluster.Generation})"));
            Interaction.DisplayMessage($"endpoint: {cluster.Endpoint}");
            Interaction.DisplayHint($"follow it with `shoal status {cluster.Name}`, or deploy with --wait");
            return ExitCodes.Success;
        }

        Interaction.DisplayMessage(string.Create(CultureInfo.InvariantCulture,
            $"deployed {cluster.Name} (generation {cluster.Generation}); waiting for {cluster.Replicas} replica(s) to be ready…"));
        var timeout = result.GetValue(s_timeoutOption) ?? s_defaultTimeout;
        var outcome = await Interaction.ShowProgressAsync(progress =>
            DeploymentWaiter.WaitAsync(
                token => client.GetClusterStatusAsync(cluster.Name, token),
                timeout,
                Context.PollInterval,
                Context.TimeProvider,
                status => progress.Report(Views.DeployProgress(status), Views.ProgressSummary(status)),
                ct));

        if (!outcome.Ready && outcome.Last?.Cluster.Failure is { } failure)
        {
            // A failed cluster runs no replica: the failure is the whole story.
            Interaction.DisplayError($"{cluster.Name} failed: {failure}");
            Interaction.DisplayHint($"fix the image or settings and run `shoal update {cluster.Name} …` to try again, or remove it with `shoal rm {cluster.Name}`");
            return ExitCodes.Failure;
        }
        if (!outcome.Ready)
        {
            var last = outcome.Last;
            var readyText = last is null ? "no status received" : $"{Views.CountReady(last)}/{last.Cluster.Replicas} replicas ready";
            Interaction.DisplayError(
                $"timed out after {Formats.Duration(timeout)} waiting for {cluster.Name}: {readyText}",
                last is null ? null : DeploymentWaiter.DescribePending(last));
            Interaction.DisplayHint($"the cluster stays deployed; see `shoal status {cluster.Name}` or remove it with `shoal rm {cluster.Name}`");
            return ExitCodes.Timeout;
        }

        var ready = outcome.Last!;
        if (IsJson)
        {
            Interaction.WriteJson(ready.Cluster, ShoalJsonContext.Default.ClusterDto);
            return ExitCodes.Success;
        }

        Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
            $"{ready.Cluster.Name} is ready: {Views.CountReady(ready)}/{ready.Cluster.Replicas} replicas"));
        Interaction.DisplayMessage($"endpoint: {ready.Cluster.Endpoint}");
        return ExitCodes.Success;
    }

    private static Option<string?> CreateRoutingOption()
    {
        var option = new Option<string?>("--routing") { Description = "How the edge balances requests (default least-outstanding)" };
        option.AcceptOnlyFromAmong(BalancingPolicy.LeastOutstanding, BalancingPolicy.RoundRobin);
        return option;
    }

    internal static Option<TimeSpan?> CreateInitialDelayOption() => CommonOptions.CreateDurationOption("--initial-delay",
        "Wait this long after a start before the first health probe, for a slow model load (default 0s)", TimeSpan.Zero, TimeSpan.FromHours(1));

    internal static Option<TimeSpan?> CreateDrainTimeoutOption() => CommonOptions.CreateDurationOption("--drain-timeout",
        "How long a replica taken out of routing may finish its in-flight requests before it is stopped (default 30s)",
        TimeSpan.Zero, TimeSpan.FromSeconds(ClusterSpec.MaxDrainTimeoutSeconds));

    internal static Option<TimeSpan?> CreateFirstByteTimeoutOption() => CommonOptions.CreateDurationOption("--first-byte-timeout",
        "An edge attempt without response headers this long is cut and retried on another replica (default: the edge's, none; 0: none). Non-streaming answers arrive whole: set it above their longest generation",
        TimeSpan.Zero, TimeSpan.FromSeconds(ClusterSpec.MaxFirstByteTimeoutSeconds));

    internal static Option<TimeSpan?> CreateProgressDeadlineOption() => CommonOptions.CreateDurationOption("--progress-deadline",
        "How long a new replica of an update may take to become ready before the update is rolled back (default 2m)",
        TimeSpan.FromSeconds(ClusterSpec.MinProgressDeadlineSeconds), TimeSpan.FromSeconds(ClusterSpec.MaxProgressDeadlineSeconds));

    internal static Option<string?> CreateHealthPathOption()
    {
        var option = new Option<string?>("--health-path") { Description = "HTTP path probed for readiness (default /health; a model endpoint such as /v1/models works too)" };
        option.Validators.Add(static result =>
        {
            var path = result.GetValueOrDefault<string?>();
            if (path is not null && !path.StartsWith('/'))
            {
                result.AddError($"--health-path must start with '/', got '{path}'");
            }
        });
        return option;
    }
}
