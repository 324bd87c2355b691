using System.Globalization;
using System.Net;

namespace Shoal.Sim;

/// <summary>Settings of the simulated vLLM server; every property has a documented default.</summary>
public sealed class SimOptions
{
    /// <summary>The most output tokens one request may ask for; larger <c>max_tokens</c> are clamped to it.</summary>
    public const int MaxTokensCap = 4096;

    /// <summary>Request bodies larger than this are refused with 413.</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    /// <summary>Address to listen on. Default <c>127.0.0.1</c>; <c>localhost</c> and IP literals are accepted.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on. Default 8000 (<c>$PORT</c>); 0 picks a free port.</summary>
    public int Port { get; set; } = 8000;

    /// <summary>Served model name, in <c>/v1/models</c>, responses and the <c>model_name</c> metric label. Default <c>shoal-sim</c>.</summary>
    public string Model { get; set; } = "shoal-sim";

    /// <summary>GPU type slug (as in the Shoal GPU catalogue). Default <c>rtx-4090</c>. Picks the speed factor when <see cref="SpeedFactor"/> is null.</summary>
    public string GpuType { get; set; } = "rtx-4090";

    /// <summary>Throughput relative to an RTX 4090 (2.0 is twice as fast). Default null: taken from <see cref="GpuType"/>.</summary>
    public double? SpeedFactor { get; set; }

    /// <summary>Requests decoded at once; more wait in a FIFO queue. Default 8.</summary>
    public int BatchSlots { get; set; } = 8;

    /// <summary>Most requests allowed to wait for a slot; beyond that requests are refused with 429. Default 1024.</summary>
    public int MaxQueue { get; set; } = 1024;

    /// <summary>
    /// Stands for model load: <c>/health</c> and <c>/v1/*</c> answer 503 until it has passed. Within
    /// it, <c>shoal sim</c> warms up its request path (as a model server warms up before its health
    /// check passes), best effort: it answers when the delay is over. Default zero (no warm-up).
    /// </summary>
    public TimeSpan StartupDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Seed for generated text and for failure injection, so runs repeat. Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Prefill time per prompt token at speed 1.0. Default 0.05 ms.</summary>
    public TimeSpan PrefillPerToken { get; set; } = TimeSpan.FromMicroseconds(50);

    /// <summary>Time per output token at speed 1.0 with one running request. Default 8 ms.</summary>
    public TimeSpan DecodePerToken { get; set; } = TimeSpan.FromMilliseconds(8);

    /// <summary>Fraction by which a decode step slows down per extra running request. Default 0.10 (+10% each).</summary>
    public double BatchSlowdown { get; set; } = 0.10;

    /// <summary>Output tokens when a request gives no <c>max_tokens</c>. Default 16.</summary>
    public int DefaultMaxTokens { get; set; } = 16;

    /// <summary>KV cache capacity in tokens, for <c>vllm:gpu_cache_usage_perc</c>. Default 32768.</summary>
    public int KvCacheTokens { get; set; } = 32768;

    /// <summary>Fraction of completion requests answered with an injected 500. Default 0.</summary>
    public double ErrorRate { get; set; }

    /// <summary>Fraction of completion requests that never answer until the client goes away. Default 0.</summary>
    public double HangRate { get; set; }

    /// <summary>When set, the process exits with code 1 once this many completion requests have been answered. Default null.</summary>
    public int? CrashAfterRequests { get; set; }

    /// <summary>
    /// What <c>/metrics</c> serves (<c>SIM_METRICS</c>): <see cref="SimMetricsMode.Ok"/> (default), <see cref="SimMetricsMode.Fail"/>
    /// (500, as a metrics endpoint that broke) or <see cref="SimMetricsMode.NaN"/> (the load gauges read NaN), to test what
    /// the autoscaler does when a replica's metrics vanish.
    /// </summary>
    public SimMetricsMode MetricsMode { get; set; } = SimMetricsMode.Ok;

    /// <summary>Replica id reported in <c>system_fingerprint</c> and the <c>X-Shoal-Replica</c> header. Default null (<c>$SHOAL_REPLICA_ID</c>).</summary>
    public string? ReplicaId { get; set; }

    /// <summary>The speed factor in effect: <see cref="SpeedFactor"/> or the one of <see cref="GpuType"/>.</summary>
    public double EffectiveSpeed => SpeedFactor ?? GpuSpeeds.For(GpuType);

    /// <summary>What responses carry in <c>system_fingerprint</c>: the replica id, or <c>shoal-sim</c> without one.</summary>
    public string Fingerprint => string.IsNullOrEmpty(ReplicaId) ? "shoal-sim" : ReplicaId;

    /// <summary>
    /// Reads the settings the agent and a user can give a replica: <c>PORT</c>, <c>SHOAL_GPU_TYPE</c>,
    /// <c>SHOAL_REPLICA_ID</c>, and the <c>SIM_*</c> overrides. Empty values count as unset.
    /// </summary>
    /// <exception cref="FormatException">A value does not parse or is out of range; the message names the variable.</exception>
    public static SimOptions FromEnvironment(IReadOnlyDictionary<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        var o = new SimOptions();
        if (Get(env, "PORT") is { } port) o.Port = ParseInt(port, "PORT", 0, 65535);
        if (Get(env, "SHOAL_GPU_TYPE") is { } gpu) o.GpuType = gpu.ToLowerInvariant();
        if (Get(env, "SHOAL_REPLICA_ID") is { } replica) o.ReplicaId = replica;
        if (Get(env, "SIM_HOST") is { } host) o.Host = host;
        if (Get(env, "SIM_MODEL") is { } model) o.Model = model;
        if (Get(env, "SIM_SPEED") is { } speed) o.SpeedFactor = ParseDouble(speed, "SIM_SPEED", 0.001, 1000);
        if (Get(env, "SIM_STARTUP_DELAY_MS") is { } delay) o.StartupDelay = TimeSpan.FromMilliseconds(ParseDouble(delay, "SIM_STARTUP_DELAY_MS", 0, TimeSpan.FromDays(1).TotalMilliseconds));
        if (Get(env, "SIM_BATCH_SLOTS") is { } slots) o.BatchSlots = ParseInt(slots, "SIM_BATCH_SLOTS", 1, 100_000);
        if (Get(env, "SIM_MAX_QUEUE") is { } queue) o.MaxQueue = ParseInt(queue, "SIM_MAX_QUEUE", 0, 10_000_000);
        if (Get(env, "SIM_SEED") is { } seed) o.Seed = ParseInt(seed, "SIM_SEED", int.MinValue, int.MaxValue);
        if (Get(env, "SIM_DECODE_MS") is { } decode) o.DecodePerToken = TimeSpan.FromMilliseconds(ParseDouble(decode, "SIM_DECODE_MS", 0, 60_000));
        if (Get(env, "SIM_PREFILL_MS") is { } prefill) o.PrefillPerToken = TimeSpan.FromMilliseconds(ParseDouble(prefill, "SIM_PREFILL_MS", 0, 60_000));
        if (Get(env, "SIM_BATCH_SLOWDOWN") is { } slowdown) o.BatchSlowdown = ParseDouble(slowdown, "SIM_BATCH_SLOWDOWN", 0, 100);
        if (Get(env, "SIM_MAX_TOKENS") is { } maxTokens) o.DefaultMaxTokens = ParseInt(maxTokens, "SIM_MAX_TOKENS", 1, MaxTokensCap);
        if (Get(env, "SIM_ERROR_RATE") is { } errors) o.ErrorRate = ParseDouble(errors, "SIM_ERROR_RATE", 0, 1);
        if (Get(env, "SIM_HANG_RATE") is { } hangs) o.HangRate = ParseDouble(hangs, "SIM_HANG_RATE", 0, 1);
        if (Get(env, "SIM_CRASH_AFTER") is { } crash) o.CrashAfterRequests = ParseInt(crash, "SIM_CRASH_AFTER", 1, int.MaxValue);
        if (Get(env, "SIM_METRICS") is { } metrics)
        {
            o.MetricsMode = metrics.Trim().ToLowerInvariant() switch
            {
                "ok" => SimMetricsMode.Ok,
                "fail" => SimMetricsMode.Fail,
                "nan" => SimMetricsMode.NaN,
                _ => throw new FormatException($"SIM_METRICS must be ok, fail or nan, got '{metrics}'"),
            };
        }
        return o;
    }

    /// <summary>Reads the settings from this process's environment (see <see cref="FromEnvironment(IReadOnlyDictionary{string, string?})"/>).</summary>
    /// <exception cref="FormatException">A value does not parse or is out of range; the message names the variable.</exception>
    public static SimOptions FromEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            env[(string)entry.Key] = entry.Value as string;
        }
        return FromEnvironment(env);
    }

    /// <summary>Every problem with these settings, one clear message each; empty when they are usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Host))
        {
            errors.Add("host must not be empty");
        }
        else if (Host != "localhost" && !IPAddress.TryParse(Host, out _))
        {
            errors.Add($"host '{Host}' must be an IP address or 'localhost'");
        }
        if (Port is < 0 or > 65535) errors.Add($"port must be between 0 and 65535, got {Port}");
        if (string.IsNullOrWhiteSpace(Model)) errors.Add("model name must not be empty");
        if (string.IsNullOrWhiteSpace(GpuType)) errors.Add("GPU type must not be empty");
        if (SpeedFactor is { } s && (!double.IsFinite(s) || s <= 0)) errors.Add($"speed factor must be a positive number, got {s}");
        if (BatchSlots < 1) errors.Add($"batch slots must be at least 1, got {BatchSlots}");
        if (MaxQueue < 0) errors.Add($"max queue must not be negative, got {MaxQueue}");
        if (StartupDelay < TimeSpan.Zero) errors.Add("startup delay must not be negative");
        if (PrefillPerToken < TimeSpan.Zero) errors.Add("prefill time per token must not be negative");
        if (DecodePerToken < TimeSpan.Zero) errors.Add("decode time per token must not be negative");
        if (!double.IsFinite(BatchSlowdown) || BatchSlowdown < 0) errors.Add($"batch slowdown must be a non-negative number, got {BatchSlowdown}");
        if (DefaultMaxTokens is < 1 or > MaxTokensCap) errors.Add($"default max tokens must be between 1 and {MaxTokensCap}, got {DefaultMaxTokens}");
        if (KvCacheTokens < 1) errors.Add($"KV cache tokens must be at least 1, got {KvCacheTokens}");
        if (!IsRate(ErrorRate)) errors.Add($"error rate must be between 0 and 1, got {ErrorRate}");
        if (!IsRate(HangRate)) errors.Add($"hang rate must be between 0 and 1, got {HangRate}");
        if (IsRate(ErrorRate) && IsRate(HangRate) && ErrorRate + HangRate > 1) errors.Add("error rate + hang rate must not exceed 1");
        if (CrashAfterRequests is < 1) errors.Add($"crash-after must be at least 1 request (or unset), got {CrashAfterRequests}");
        return errors;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> listing every problem found by <see cref="Validate"/>.</summary>
    public void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("invalid simulator settings: " + string.Join("; ", errors));
        }
    }

    private static bool IsRate(double value) => double.IsFinite(value) && value is >= 0 and <= 1;

    private static string? Get(IReadOnlyDictionary<string, string?> env, string name) =>
        env.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;

    private static int ParseInt(string text, string name, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            throw new FormatException($"{name}='{text}' is not a whole number");
        }
        if (value < min || value > max)
        {
            throw new FormatException($"{name}={value} is out of range: it must be between {min} and {max}");
        }
        return value;
    }

    private static double ParseDouble(string text, string name, double min, double max)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
        {
            throw new FormatException($"{name}='{text}' is not a number");
        }
        if (value < min || value > max)
        {
            throw new FormatException(string.Create(CultureInfo.InvariantCulture, $"{name}={value} is out of range: it must be between {min} and {max}"));
        }
        return value;
    }
}

/// <summary>What the simulator's <c>/metrics</c> serves.</summary>
public enum SimMetricsMode
{
    Ok,
    /// <summary>500 with a short text.</summary>
    Fail,
    /// <summary>The metrics, with NaN for the running and waiting gauges.</summary>
    NaN,
}
