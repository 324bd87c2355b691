using System.Globalization;
using System.Text.RegularExpressions;
using Shoal.Contracts;
using Shoal.Core.Gpus;

namespace Shoal.Core.Clusters;

/// <summary>The outcome of validating user input: a value, or every problem found.</summary>
public sealed record Validated<T>(T? Value, IReadOnlyList<string> Errors)
{
    public bool IsValid => Errors.Count == 0;
    public string Message => string.Join("; ", Errors);
}

/// <summary>Validates and normalises cluster specs; every rule gives a message a user can act on.</summary>
public static partial class ClusterSpecValidator
{
    public const int MaxEnvVars = 256;
    public const int MaxEnvValueLength = 32 * 1024;
    public const int MaxArgs = 256;
    public const int MaxArgLength = 4096;
    public const int MaxGpuCount = 16;
    public const int MaxInitialDelayMs = 3_600_000;

    // RFC 1123 label, starting with a letter so that it is also a valid host name label.
    [GeneratedRegex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    // OCI reference: [host[:port]/]path[:tag][@algo:hex]. As in Docker, the first component is a
    // registry host only if it has a dot or a port or is localhost; path components are lower-case.
    [GeneratedRegex(@"^(?:(?<host>(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|localhost)(?::[0-9]{1,5})?|[a-zA-Z0-9-]+:[0-9]{1,5})/)?(?<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}))?$")]
    private static partial Regex ImageReference();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex EnvName();

    public static bool IsValidName(string? name) => name is not null && DnsLabel().IsMatch(name);

    /// <summary>The most node labels a token or a cluster may name.</summary>
    public const int MaxLabels = 16;

    /// <summary>A node label: a DNS label (lower-case letters, digits and '-', starting with a letter).</summary>
    public static bool IsValidLabel(string? label) => IsValidName(label);

    /// <summary>Checks a list of node labels (<paramref name="field"/> names it in messages); adds a message per problem.</summary>
    public static void ValidateLabels(IReadOnlyList<string?> labels, string field, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(errors);
        if (labels.Count > MaxLabels) errors.Add($"{field}: at most {MaxLabels} labels are allowed, got {labels.Count}");
        foreach (var label in labels)
        {
            if (!IsValidLabel(label))
            {
                errors.Add($"{field}: label '{Truncate(label ?? "")}' is not a DNS label: use 1-63 lower-case letters, digits and '-', starting with a letter");
            }
        }
    }

    public static bool IsValidImage(string? image) => image is not null && image.Length <= 512 && ImageReference().IsMatch(image);

    /// <param name="processImages">
    /// The images some node's process runtime runs, whose env and args are held to a stricter rule;
    /// default: <see cref="ProcessImagePolicy.BuiltIn"/> (only <c>shoal/sim</c>).
    /// </param>
    public static Validated<ClusterSpec> Validate(CreateClusterRequest request, ProcessImagePolicy? processImages = null)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(request.Name))
        {
            errors.Add("name is required");
        }
        else if (!IsValidName(request.Name))
        {
            errors.Add($"name '{Truncate(request.Name)}' is not a DNS label: use 1-63 lower-case letters, digits and '-', starting with a letter and not ending with '-'");
        }

        if (string.IsNullOrWhiteSpace(request.Image))
        {
            errors.Add("image is required");
        }
        else if (!IsValidImage(request.Image))
        {
            errors.Add($"image '{Truncate(request.Image)}' is not a valid image reference (for example 'ghcr.io/org/model:1.0' or 'shoal/sim')");
        }

        if (string.IsNullOrWhiteSpace(request.Gpu))
        {
            errors.Add("gpu is required (for example 'rtx-4090')");
        }
        else if (!GpuCatalog.IsKnown(request.Gpu))
        {
            errors.Add($"unknown gpu type '{Truncate(request.Gpu)}'; known types: {string.Join(", ", GpuCatalog.All.Select(t => t.Slug))}");
        }

        var gpuCount = request.GpuCount ?? 1;
        if (gpuCount is < 1 or > MaxGpuCount)
        {
            errors.Add($"gpuCount must be between 1 and {MaxGpuCount}, got {gpuCount}");
        }

        var autoscale = ValidateAutoscale(request.Autoscale, errors);
        var replicas = request.Replicas ?? (autoscale is null ? 1 : Math.Clamp(1, autoscale.Min, autoscale.Max));
        ValidateReplicas(replicas, errors);
        if (autoscale is not null && request.Replicas is { } given && (given < autoscale.Min || given > autoscale.Max))
        {
            errors.Add($"replicas ({given}) must be within the autoscaling bounds min {autoscale.Min} .. max {autoscale.Max}");
        }
        var maxHeld = request.MaxHeld ?? BalancingPolicy.DefaultMaxHeld;
        if (maxHeld is < 0 or > ClusterSpec.MaxMaxHeld)
        {
            errors.Add($"maxHeld must be between 0 and {ClusterSpec.MaxMaxHeld}, got {maxHeld}");
        }

        var models = ValidateModels(request.Models, errors);

        var port = request.Port ?? ClusterSpec.DefaultPort;
        if (port is < 1 or > 65535)
        {
            errors.Add($"port must be between 1 and 65535, got {port}");
        }

        var env = ValidateEnv(request.Env, "env", errors);
        var secretEnv = ValidateEnv(request.SecretEnv, "secretEnv", errors);
        if (env.Count + secretEnv.Count > MaxEnvVars && (request.Env?.Count ?? 0) <= MaxEnvVars && (request.SecretEnv?.Count ?? 0) <= MaxEnvVars)
        {
            errors.Add($"at most {MaxEnvVars} env variables (plain and secret together) are allowed, got {env.Count + secretEnv.Count}");
        }
        foreach (var name in env.Keys.Where(secretEnv.ContainsKey).Order(StringComparer.Ordinal))
        {
            errors.Add($"env '{name}' is given both as plain and as secret env");
        }

        var args = request.Args ?? [];
        if (args.Length > MaxArgs)
        {
            errors.Add($"at most {MaxArgs} args are allowed, got {args.Length}");
        }
        if (args.Any(a => a is null || a.Length > MaxArgLength))
        {
            errors.Add($"every arg must be a string of at most {MaxArgLength} characters");
        }
        else if (IsValidImage(request.Image))
        {
            errors.AddRange((processImages ?? ProcessImagePolicy.BuiltIn).Check(request.Image, env.Keys, args));
        }

        var health = request.Health ?? new HealthCheckSpec();
        if (string.IsNullOrEmpty(health.Path) || health.Path[0] != '/' || health.Path.Length > 1024 || health.Path.Any(char.IsWhiteSpace))
        {
            errors.Add($"health.path must be an absolute path such as '/health', got '{Truncate(health.Path ?? "")}'");
        }
        if (health.IntervalMs is < 100 or > 600_000) errors.Add("health.intervalMs must be between 100 and 600000");
        if (health.TimeoutMs is < 50 or > 600_000) errors.Add("health.timeoutMs must be between 50 and 600000");
        if (health.FailureThreshold is < 1 or > 100) errors.Add("health.failureThreshold must be between 1 and 100");
        if (health.SuccessThreshold is < 1 or > 100) errors.Add("health.successThreshold must be between 1 and 100");
        if (health.InitialDelayMs is < 0 or > MaxInitialDelayMs) errors.Add($"health.initialDelayMs must be between 0 and {MaxInitialDelayMs} (1 hour), got {health.InitialDelayMs}");

        if (request.RegistryAuth is { } auth)
        {
            if (string.IsNullOrWhiteSpace(auth.Username) || auth.Username.Length > 256)
            {
                errors.Add("registryAuth.username must be 1-256 characters");
            }
            if (string.IsNullOrEmpty(auth.Password) || auth.Password.Length > 4096)
            {
                errors.Add("registryAuth.password must be 1-4096 characters");
            }
            if (auth.Server is { } server && (server.Length is 0 or > 253 || server.Any(char.IsWhiteSpace)))
            {
                errors.Add("registryAuth.server must be a registry host such as 'ghcr.io'");
            }
        }
        if (request.NodeLabels is { } nodeLabels)
        {
            ValidateLabels(nodeLabels, "nodeLabels", errors);
        }
        var routing = string.IsNullOrEmpty(request.Routing) ? BalancingPolicy.LeastOutstanding : request.Routing;
        if (!BalancingPolicy.IsKnown(routing))
        {
            errors.Add($"routing '{Truncate(routing)}' is unknown: use '{BalancingPolicy.LeastOutstanding}' or '{BalancingPolicy.RoundRobin}'");
        }
        var queueTimeout = request.QueueTimeoutSeconds ?? ClusterSpec.DefaultQueueTimeoutSeconds;
        if (queueTimeout is < 0 or > ClusterSpec.MaxQueueTimeoutSeconds)
        {
            errors.Add($"queueTimeoutSeconds must be between 0 and {ClusterSpec.MaxQueueTimeoutSeconds}, got {queueTimeout}");
        }

        if (request.FirstByteTimeoutSeconds is < 0 or > ClusterSpec.MaxFirstByteTimeoutSeconds)
        {
            errors.Add($"firstByteTimeoutSeconds must be between 0 and {ClusterSpec.MaxFirstByteTimeoutSeconds}, got {request.FirstByteTimeoutSeconds}");
        }

        var drainTimeout = request.DrainTimeoutSeconds ?? ClusterSpec.DefaultDrainTimeoutSeconds;
        if (drainTimeout is < 0 or > ClusterSpec.MaxDrainTimeoutSeconds)
        {
            errors.Add($"drainTimeoutSeconds must be between 0 and {ClusterSpec.MaxDrainTimeoutSeconds}, got {drainTimeout}");
        }
        var progressDeadline = request.ProgressDeadlineSeconds ?? ClusterSpec.DefaultProgressDeadlineSeconds;
        if (progressDeadline is < ClusterSpec.MinProgressDeadlineSeconds or > ClusterSpec.MaxProgressDeadlineSeconds)
        {
            errors.Add($"progressDeadlineSeconds must be between {ClusterSpec.MinProgressDeadlineSeconds} and {ClusterSpec.MaxProgressDeadlineSeconds}, got {progressDeadline}");
        }
        else if (health.InitialDelayMs >= progressDeadline * 1000L)
        {
            errors.Add($"progressDeadlineSeconds ({progressDeadline}) must be longer than health.initialDelayMs ({health.InitialDelayMs} ms), or every update would roll back");
        }

        var price = ValidatePrice(request.Price, errors);

        if (errors.Count > 0)
        {
            return new Validated<ClusterSpec>(null, errors);
        }

        return new Validated<ClusterSpec>(new ClusterSpec
        {
            Name = request.Name!,
            Image = request.Image!,
            Gpu = request.Gpu!,
            GpuCount = gpuCount,
            Replicas = replicas,
            Port = port,
            Env = env,
            SecretEnv = secretEnv,
            Args = args,
            Health = health,
            RegistryAuth = request.RegistryAuth,
            NodeLabels = request.NodeLabels?.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray(),
            Routing = routing,
            Public = request.Public ?? false,
            QueueTimeoutSeconds = queueTimeout,
            FirstByteTimeoutSeconds = request.FirstByteTimeoutSeconds,
            DrainTimeoutSeconds = drainTimeout,
            ProgressDeadlineSeconds = progressDeadline,
            MaxHeld = maxHeld,
            Autoscale = autoscale,
            Models = models,
            Price = price,
        }, errors);
    }

    /// <summary>Model names: 1..256 printable characters without spaces, at most 64, duplicates dropped, sorted; null when none is given.</summary>
    private static string[]? ValidateModels(string[]? given, List<string> errors)
    {
        if (given is null || given.Length == 0) return null;
        if (given.Length > ClusterSpec.MaxModels)
        {
            errors.Add($"at most {ClusterSpec.MaxModels} models, got {given.Length}");
            return null;
        }
        foreach (var model in given)
        {
            if (string.IsNullOrEmpty(model) || model.Length > ClusterSpec.MaxModelNameLength || model.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            {
                errors.Add($"model name '{Truncate(model ?? "")}' is invalid: use 1 to {ClusterSpec.MaxModelNameLength} characters without spaces (e.g. meta-llama/Llama-3.1-8B-Instruct)");
            }
        }
        return given.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>
    /// Autoscaling settings from a request that gives them whole (defaults for what it leaves out);
    /// null when it gives none or turns autoscaling off. Adds a message per problem.
    /// </summary>
    private static AutoscaleSpec? ValidateAutoscale(AutoscaleRequest? request, List<string> errors)
    {
        if (request is null) return null;
        if (request.Off == true)
        {
            if (request.Min is not null || request.Max is not null || request.TargetWaiting is not null || request.TargetConcurrency is not null
                || request.ScaleDownWindowSeconds is not null || request.ScaleToZeroAfterSeconds is not null)
            {
                errors.Add("autoscale.off cannot be combined with other autoscale settings");
            }
            return null;
        }
        var count = errors.Count;
        var min = request.Min ?? 1;
        if (request.Max is not { } max)
        {
            errors.Add("autoscale.max is required to turn autoscaling on (the most replicas it may run)");
            max = Math.Max(min, 1);
        }
        if (min is < 0 or > ClusterSpec.MaxReplicas) errors.Add($"autoscale.min must be between 0 and {ClusterSpec.MaxReplicas}, got {min}");
        if (max is < 1 or > ClusterSpec.MaxReplicas) errors.Add($"autoscale.max must be between 1 and {ClusterSpec.MaxReplicas}, got {max}");
        else if (min > max) errors.Add($"autoscale.min ({min}) must not be above autoscale.max ({max})");
        var waiting = request.TargetWaiting ?? AutoscaleSpec.DefaultTargetWaiting;
        var concurrency = request.TargetConcurrency ?? 0;
        if (!double.IsFinite(waiting) || waiting is < 0 or > ClusterSpec.MaxTarget) errors.Add($"autoscale.targetWaiting must be between 0 and {ClusterSpec.MaxTarget} (0: not used)");
        if (!double.IsFinite(concurrency) || concurrency is < 0 or > ClusterSpec.MaxTarget) errors.Add($"autoscale.targetConcurrency must be between 0 and {ClusterSpec.MaxTarget} (0: not used)");
        else if (waiting == 0 && concurrency == 0) errors.Add("autoscale needs a target: targetWaiting or targetConcurrency (or both) above 0");
        var window = request.ScaleDownWindowSeconds ?? AutoscaleSpec.DefaultScaleDownWindowSeconds;
        if (window is < 0 or > ClusterSpec.MaxScaleDownWindowSeconds) errors.Add($"autoscale.scaleDownWindowSeconds must be between 0 and {ClusterSpec.MaxScaleDownWindowSeconds}, got {window}");
        var toZero = request.ScaleToZeroAfterSeconds ?? 0;
        if (toZero is < 0 or > ClusterSpec.MaxScaleToZeroAfterSeconds)
        {
            errors.Add($"autoscale.scaleToZeroAfterSeconds must be between 0 and {ClusterSpec.MaxScaleToZeroAfterSeconds}, got {toZero}");
        }
        else if (min == 0 && toZero == 0)
        {
            errors.Add("autoscale.min 0 needs scaleToZeroAfterSeconds (--scale-to-zero-after): how long without any request before the last replica stops");
        }
        else if (min > 0 && toZero > 0)
        {
            errors.Add($"autoscale.scaleToZeroAfterSeconds needs min 0 (with min {min} the cluster never goes below {min}); give --min 0 or leave it out");
        }
        if (errors.Count > count) return null;
        return new AutoscaleSpec
        {
            Min = min,
            Max = max,
            TargetWaiting = waiting,
            TargetConcurrency = concurrency,
            ScaleDownWindowSeconds = window,
            ScaleToZeroAfterSeconds = toZero,
        };
    }

    /// <summary>The whole autoscaling request an update amounts to: the current settings with the given fields changed.</summary>
    private static AutoscaleRequest? MergeAutoscale(AutoscaleSpec? current, AutoscaleRequest? given)
    {
        if (given is null)
        {
            return current is null ? null : new AutoscaleRequest
            {
                Min = current.Min, Max = current.Max, TargetWaiting = current.TargetWaiting, TargetConcurrency = current.TargetConcurrency,
                ScaleDownWindowSeconds = current.ScaleDownWindowSeconds, ScaleToZeroAfterSeconds = current.ScaleToZeroAfterSeconds,
            };
        }
        if (given.Off == true || current is null) return given;
        return new AutoscaleRequest
        {
            Min = given.Min ?? current.Min,
            Max = given.Max ?? current.Max,
            TargetWaiting = given.TargetWaiting ?? current.TargetWaiting,
            TargetConcurrency = given.TargetConcurrency ?? current.TargetConcurrency,
            ScaleDownWindowSeconds = given.ScaleDownWindowSeconds ?? current.ScaleDownWindowSeconds,
            // Going to min > 0 without naming the idle period drops it rather than failing on it.
            ScaleToZeroAfterSeconds = given.ScaleToZeroAfterSeconds ?? (given.Min > 0 ? 0 : current.ScaleToZeroAfterSeconds),
        };
    }

    /// <summary>
    /// The spec <paramref name="current"/> becomes with <paramref name="update"/> applied (only the
    /// fields given change; env is merged: set, then unset), validated by the same rules as a new cluster.
    /// </summary>
    public static Validated<ClusterSpec> ApplyUpdate(ClusterSpec current, UpdateClusterRequest update, ProcessImagePolicy? processImages = null)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(update);
        var errors = new List<string>();
        if (update.Replicas is null && update.Image is null && update.Env is null && update.SecretEnv is null && update.UnsetEnv is null && update.Args is null
            && update.Port is null && update.Health is null && update.Routing is null && update.QueueTimeoutSeconds is null
            && update.FirstByteTimeoutSeconds is null && update.DrainTimeoutSeconds is null && update.ProgressDeadlineSeconds is null && update.Public is null
            && update.Autoscale is null && update.MaxHeld is null && update.Models is null && update.Price is null)
        {
            errors.Add("nothing to change: give replicas, image, env, secretEnv, unsetEnv, args, port, health, routing, queueTimeoutSeconds, firstByteTimeoutSeconds, drainTimeoutSeconds, progressDeadlineSeconds, public, autoscale, maxHeld, models or price");
            return new Validated<ClusterSpec>(null, errors);
        }

        // A name is plain or secret, never both: setting it one way takes it out of the other.
        var env = new Dictionary<string, string>(current.Env, StringComparer.Ordinal);
        var secretEnv = new Dictionary<string, string>(current.SecretEnv, StringComparer.Ordinal);
        foreach (var (key, value) in update.Env ?? [])
        {
            if (update.SecretEnv?.ContainsKey(key) == true)
            {
                errors.Add($"env '{key}' is given both as plain and as secret env");
                continue;
            }
            env[key] = value;
            secretEnv.Remove(key);
        }
        foreach (var (key, value) in update.SecretEnv ?? [])
        {
            if (update.Env?.ContainsKey(key) == true) continue;
            secretEnv[key] = value;
            env.Remove(key);
        }
        foreach (var key in update.UnsetEnv ?? [])
        {
            if (key is null || !EnvName().IsMatch(key))
            {
                errors.Add($"unsetEnv name '{Truncate(key ?? "")}' is invalid: use letters, digits and '_', not starting with a digit");
            }
            else if (update.Env?.ContainsKey(key) == true || update.SecretEnv?.ContainsKey(key) == true)
            {
                errors.Add($"env '{key}' is both set and unset");
            }
            else
            {
                env.Remove(key);
                secretEnv.Remove(key);
            }
        }

        var autoscale = MergeAutoscale(current.Autoscale, update.Autoscale);
        var autoscaleOn = autoscale is not null && autoscale.Off != true;
        var replicas = update.Replicas ?? current.Replicas;
        if (autoscaleOn && update.Replicas is not null)
        {
            errors.Add(current.Autoscale is { } on
                ? $"autoscaling owns the replica count of '{current.Name}' (min {on.Min}, max {on.Max}): set the bounds instead (shoal autoscale {current.Name} --min N --max M), or turn autoscaling off first (shoal autoscale {current.Name} --off)"
                : "replicas cannot be set while turning autoscaling on: the autoscaler owns the replica count (it starts within min..max)");
        }
        else if (autoscaleOn && update.Replicas is null && autoscale!.Min is { } low && autoscale.Max is { } high && low <= high)
        {
            // New bounds move the count into them at once; the autoscaler takes it from there.
            replicas = Math.Clamp(replicas, low, high);
        }

        var merged = Validate(new CreateClusterRequest
        {
            Name = current.Name,
            Image = update.Image ?? current.Image,
            Gpu = current.Gpu,
            GpuCount = current.GpuCount,
            Replicas = replicas,
            Port = update.Port ?? current.Port,
            Env = env,
            SecretEnv = secretEnv,
            Args = update.Args ?? current.Args,
            Health = update.Health ?? current.Health,
            RegistryAuth = current.RegistryAuth,
            NodeLabels = current.NodeLabels,
            Routing = update.Routing ?? current.Routing,
            Public = update.Public ?? current.Public,
            QueueTimeoutSeconds = update.QueueTimeoutSeconds ?? current.QueueTimeoutSeconds,
            FirstByteTimeoutSeconds = update.FirstByteTimeoutSeconds ?? current.FirstByteTimeoutSeconds,
            DrainTimeoutSeconds = update.DrainTimeoutSeconds ?? current.DrainTimeoutSeconds,
            ProgressDeadlineSeconds = update.ProgressDeadlineSeconds ?? current.ProgressDeadlineSeconds,
            Autoscale = autoscale,
            MaxHeld = update.MaxHeld ?? current.MaxHeld,
            Models = update.Models ?? current.Models,
            Price = MergePrice(current.Price, update.Price),
        }, processImages);
        errors.AddRange(merged.Errors);
        return errors.Count > 0 ? new Validated<ClusterSpec>(null, errors) : merged;
    }

    /// <summary>The price with every part within 0..<see cref="ClusterSpec.MaxPriceUsd"/>; null when none is given or every part is null.</summary>
    private static ClusterPrice? ValidatePrice(ClusterPrice? price, List<string> errors)
    {
        if (price is null) return null;
        void Check(string field, decimal? value)
        {
            if (value is < 0 or > ClusterSpec.MaxPriceUsd)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"price.{field} must be between 0 and {ClusterSpec.MaxPriceUsd} USD, got {value}"));
            }
        }
        Check("inputPerMillion", price.InputPerMillion);
        Check("outputPerMillion", price.OutputPerMillion);
        Check("perGpuSecond", price.PerGpuSecond);
        return price.InputPerMillion is null && price.OutputPerMillion is null && price.PerGpuSecond is null ? null : price;
    }

    /// <summary>The parts <paramref name="update"/> gives replace those of <paramref name="current"/>; the others stay.</summary>
    private static ClusterPrice? MergePrice(ClusterPrice? current, ClusterPrice? update) =>
        update is null ? current : new ClusterPrice
        {
            InputPerMillion = update.InputPerMillion ?? current?.InputPerMillion,
            OutputPerMillion = update.OutputPerMillion ?? current?.OutputPerMillion,
            PerGpuSecond = update.PerGpuSecond ?? current?.PerGpuSecond,
        };

    // Values are never quoted in a message: a secret value must not come back in an error.
    private static Dictionary<string, string> ValidateEnv(Dictionary<string, string>? given, string field, List<string> errors)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        if (given is null) return env;
        if (given.Count > MaxEnvVars)
        {
            errors.Add($"at most {MaxEnvVars} {field} variables are allowed, got {given.Count}");
        }
        foreach (var (key, value) in given)
        {
            if (!EnvName().IsMatch(key))
            {
                errors.Add($"{field} name '{Truncate(key)}' is invalid: use letters, digits and '_', not starting with a digit");
            }
            else if (value is null)
            {
                errors.Add($"{field} '{key}' has no value");
            }
            else if (value.Length > MaxEnvValueLength)
            {
                errors.Add($"{field} '{key}' is longer than {MaxEnvValueLength} characters");
            }
            else
            {
                env[key] = value;
            }
        }
        return env;
    }

    /// <summary>Checks a replica count; adds a message to <paramref name="errors"/> when out of range.</summary>
    public static void ValidateReplicas(int replicas, List<string> errors)
    {
        if (replicas is < 0 or > ClusterSpec.MaxReplicas)
        {
            errors.Add($"replicas must be between 0 and {ClusterSpec.MaxReplicas}, got {replicas}");
        }
    }

    private static string Truncate(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
