using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Cli.Parsing;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>
/// <c>shoal update NAME [--image IMG] [-e K=V] [--unset-env K] …</c>: changes a cluster. A change of
/// what replicas run starts a rolling update (one new replica at a time, old ones drained, rolled
/// back automatically if the new ones do not become ready); <c>--wait</c> follows it to the end.
/// </summary>
public sealed class UpdateCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };

    private static readonly Option<string?> s_imageOption = new("--image") { Description = "New container image" };

    private static readonly Option<Dictionary<string, string>> s_envOption = CommonOptions.CreateEnvOption("Set an environment variable, KEY=VALUE (the others are kept); repeat for more");

    private static readonly Option<string[]> s_secretEnvOption = CommonOptions.CreateSecretEnvOption(
        "Set a secret environment variable, NAME=VALUE or NAME (value from $NAME); the other secret ones are kept without being sent again; repeat for more");

    private static readonly Option<string[]> s_unsetEnvOption = CreateUnsetEnvOption();

    private static readonly Option<string[]> s_argOption = new("--arg")
    {
        Description = "Argument passed to the container, replacing the current ones; repeat for more",
        Arity = ArgumentArity.ZeroOrMore,
    };

    private static readonly Option<string[]> s_modelOption = new("--model")
    {
        Description = "Model name the cluster serves on the edge's /v1 facade, replacing the current ones; repeat for more; --model \"\" goes back to what the replicas list",
        Arity = ArgumentArity.ZeroOrMore,
    };

    private static readonly Option<int?> s_replicasOption = CommonOptions.CreateIntOption("--replicas", "New number of replicas", 0);

    private static readonly Option<string?> s_healthPathOption = DeployCommand.CreateHealthPathOption();

    private static readonly Option<TimeSpan?> s_healthIntervalOption = CommonOptions.CreateDurationOption("--health-interval",
        "Time between health probes (default 1s)", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));

    private static readonly Option<TimeSpan?> s_initialDelayOption = DeployCommand.CreateInitialDelayOption();

    private static readonly Option<TimeSpan?> s_drainTimeoutOption = DeployCommand.CreateDrainTimeoutOption();
    private static readonly Option<TimeSpan?> s_firstByteTimeoutOption = DeployCommand.CreateFirstByteTimeoutOption();

    private static readonly Option<TimeSpan?> s_progressDeadlineOption = DeployCommand.CreateProgressDeadlineOption();

    private static readonly Option<bool?> s_publicOption = new("--public")
    {
        Description = "--public true: the endpoint answers without a key; --public false: only with an endpoint key of the project",
    };

    private static readonly Option<bool> s_waitOption = new("--wait")
    {
        Description = "Wait until the update is complete (exit 0) or rolled back (exit 8, saying why)",
    };

    private static readonly TimeSpan s_defaultTimeout = TimeSpan.FromMinutes(10);

    private static readonly Option<TimeSpan?> s_timeoutOption =
        CommonOptions.CreateDurationOption("--timeout", "How long --wait waits, default 10m", TimeSpan.Zero, TimeSpan.FromDays(1));

    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    private static readonly AutoscaleOptions s_autoscale = new();

    private static readonly PriceOptions s_price = new();

    public UpdateCommand(CliContext context)
        : base("update", "Change a cluster: a new image, env or args rolls out one replica at a time, and rolls back on failure", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
        Options.Add(s_imageOption);
        Options.Add(s_envOption);
        Options.Add(s_secretEnvOption);
        Options.Add(s_unsetEnvOption);
        Options.Add(s_argOption);
        Options.Add(s_modelOption);
        Options.Add(s_replicasOption);
        Options.Add(s_healthPathOption);
        Options.Add(s_healthIntervalOption);
        Options.Add(s_initialDelayOption);
        Options.Add(s_drainTimeoutOption);
        Options.Add(s_firstByteTimeoutOption);
        Options.Add(s_progressDeadlineOption);
        Options.Add(s_publicOption);
        Options.Add(s_waitOption);
        Options.Add(s_timeoutOption);
        s_autoscale.AddTo(this);
        s_price.AddTo(this);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var name = result.GetValue(s_nameArgument)!;
        var env = result.GetValue(s_envOption) ?? [];
        var unset = result.GetValue(s_unsetEnvOption) ?? [];
        if (!EnvParser.TryParseSecret(result.GetValue(s_secretEnvOption) ?? [], Context.GetEnvironmentVariable, out var secretEnv, out var secretError))
        {
            Interaction.DisplayError(secretError!);
            return ExitCodes.InvalidInput;
        }
        var args = result.GetValue(s_argOption) ?? [];
        var healthPath = result.GetValue(s_healthPathOption);
        var healthInterval = result.GetValue(s_healthIntervalOption);
        var initialDelay = result.GetValue(s_initialDelayOption);

        HealthCheckSpec? health = null;
        if (healthPath is not null || healthInterval is not null || initialDelay is not null)
        {
            // The API replaces the health check as a whole: start from the cluster's.
            var current = await client.GetClusterAsync(name, ct);
            health = current.Health with
            {
                Path = healthPath ?? current.Health.Path,
                IntervalMs = healthInterval is { } interval ? (int)interval.TotalMilliseconds : current.Health.IntervalMs,
                InitialDelayMs = initialDelay is { } delay ? (int)delay.TotalMilliseconds : current.Health.InitialDelayMs,
            };
        }

        var request = new UpdateClusterRequest
        {
            Image = result.GetValue(s_imageOption),
            Env = env.Count == 0 ? null : env,
            SecretEnv = secretEnv.Count == 0 ? null : secretEnv,
            UnsetEnv = unset.Length == 0 ? null : unset,
            Args = args.Length == 0 ? null : args,
            Replicas = result.GetValue(s_replicasOption),
            Health = health,
            DrainTimeoutSeconds = Seconds(result.GetValue(s_drainTimeoutOption)),
            FirstByteTimeoutSeconds = Seconds(result.GetValue(s_firstByteTimeoutOption)),
            ProgressDeadlineSeconds = Seconds(result.GetValue(s_progressDeadlineOption)),
            Public = result.GetValue(s_publicOption),
            Autoscale = s_autoscale.Read(result),
            MaxHeld = result.GetValue(s_autoscale.MaxHeld),
            Models = result.GetValue(s_modelOption) is { Length: > 0 } models ? [.. models.Where(m => m.Length > 0)] : null,
            Price = s_price.Read(result),
        };
        if (request == new UpdateClusterRequest())
        {
            Interaction.DisplayError("nothing to change: give --image, --env, --secret-env, --unset-env, --arg, --replicas, a health option, --drain-timeout, --first-byte-timeout, --progress-deadline, --public, an autoscaling option (--min, --max, …), --max-held, --model or a price (--price-input, --price-output, --price-gpu-second)");
            return ExitCodes.InvalidInput;
        }

        var cluster = await client.UpdateClusterAsync(name, request, ct);
        var rolling = cluster.Rollout?.State == RolloutStates.Progressing;
        if (!result.GetValue(s_waitOption) || !rolling)
        {
            if (IsJson)
            {
                Interaction.WriteJson(cluster, ShoalJsonContext.Default.ClusterDto);
                return ExitCodes.Success;
            }

            Interaction.DisplaySuccess(rolling
                ? string.Create(CultureInfo.InvariantCulture, $"updating {cluster.Name} to generation {cluster.Generation} ({cluster.Rollout!.Reason}): one replica at a time")
                : string.Create(CultureInfo.InvariantCulture, $"updated {cluster.Name} (generation {cluster.Generation}; nothing to roll out)"));
            if (rolling)
            {
                Interaction.DisplayHint($"follow it with `shoal status {cluster.Name}` or `shoal events {cluster.Name}`, or update with --wait");
            }
            return ExitCodes.Success;
        }

        Interaction.DisplayMessage(string.Create(CultureInfo.InvariantCulture,
            $"updating {cluster.Name} to generation {cluster.Generation} ({cluster.Rollout!.Reason}); waiting for it to roll out…"));
        var timeout = result.GetValue(s_timeoutOption) ?? s_defaultTimeout;
        var outcome = await Interaction.ShowProgressAsync(progress =>
            RolloutWaiter.WaitAsync(
                token => client.GetClusterStatusAsync(name, token),
                cluster.Generation,
                timeout,
                Context.PollInterval,
                Context.TimeProvider,
                status => progress.Report(Views.DeployProgress(status), Views.RolloutSummary(status.Cluster)),
                ct));

        var last = outcome.Last;
        switch (outcome.Result)
        {
            case RolloutResult.Complete:
                if (IsJson)
                {
                    Interaction.WriteJson(last!.Cluster, ShoalJsonContext.Default.ClusterDto);
                }
                else
                {
                    Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
                        $"{name} is updated: generation {last!.Cluster.Generation}, {Views.CountReady(last)}/{last.Cluster.Replicas} replicas ready"));
                }
                return ExitCodes.Success;
            case RolloutResult.RolledBack:
                Interaction.DisplayError($"the update of {name} was rolled back: {last!.Cluster.Rollout?.Reason ?? "no reason given"}");
                Interaction.DisplayHint($"the cluster runs its previous spec again (generation {last.Cluster.Generation}); see `shoal events {name}` and `shoal logs {name}`");
                return ExitCodes.RolledBack;
            default:
                Interaction.DisplayError(
                    $"timed out after {Formats.Duration(timeout)} waiting for the update of {name}: {(last is null ? "no status received" : Views.RolloutSummary(last.Cluster))}",
                    last is null ? null : DeploymentWaiter.DescribePending(last));
                Interaction.DisplayHint($"the update goes on; see `shoal status {name}`");
                return ExitCodes.Timeout;
        }
    }

    private static int? Seconds(TimeSpan? value) => value is { } v ? (int)Math.Ceiling(v.TotalSeconds) : null;

    private static Option<string[]> CreateUnsetEnvOption()
    {
        var option = new Option<string[]>("--unset-env")
        {
            Description = "Remove an environment variable; repeat for more",
            HelpName = "KEY",
            Arity = ArgumentArity.ZeroOrMore,
        };
        option.Validators.Add(static result =>
        {
            foreach (var key in result.GetValueOrDefault<string[]>() ?? [])
            {
                if (!EnvParser.IsValidName(key))
                {
                    result.AddError($"--unset-env name '{key}' is not valid: use letters, digits and '_', not starting with a digit");
                }
            }
        });
        return option;
    }
}
