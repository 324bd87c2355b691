namespace Shoal.Sim.Tests;

public sealed class SimOptionsTests
{
    private static Dictionary<string, string?> Env(params (string Key, string? Value)[] pairs) =>
        pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

    [Fact]
    public void Defaults_are_the_documented_ones_and_valid()
    {
        var o = new SimOptions();
        Assert.Equal("127.0.0.1", o.Host);
        Assert.Equal(8000, o.Port);
        Assert.Equal("shoal-sim", o.Model);
        Assert.Equal("rtx-4090", o.GpuType);
        Assert.Null(o.SpeedFactor);
        Assert.Equal(1.0, o.EffectiveSpeed);
        Assert.Equal(8, o.BatchSlots);
        Assert.Equal(1024, o.MaxQueue);
        Assert.Equal(TimeSpan.Zero, o.StartupDelay);
        Assert.Equal(42, o.Seed);
        Assert.Equal(TimeSpan.FromMilliseconds(8), o.DecodePerToken);
        Assert.Equal(TimeSpan.FromMilliseconds(0.05), o.PrefillPerToken);
        Assert.Equal(16, o.DefaultMaxTokens);
        Assert.Null(o.CrashAfterRequests);
        Assert.Equal("shoal-sim", o.Fingerprint);
        Assert.Empty(o.Validate());
    }

    [Fact]
    public void FromEnvironment_reads_agent_variables_and_overrides()
    {
        var o = SimOptions.FromEnvironment(Env(
            ("PORT", "9123"),
            ("SHOAL_GPU_TYPE", "RTX-3090"),
            ("SHOAL_REPLICA_ID", "rep-7"),
            ("CUDA_VISIBLE_DEVICES", "0,1"),
            ("SIM_STARTUP_DELAY_MS", "1500"),
            ("SIM_BATCH_SLOTS", "4"),
            ("SIM_SEED", "-3"),
            ("SIM_DECODE_MS", "2.5"),
            ("SIM_PREFILL_MS", "0.1"),
            ("SIM_ERROR_RATE", "0.25"),
            ("SIM_HANG_RATE", "0.05"),
            ("SIM_CRASH_AFTER", "10"),
            ("SIM_MODEL", "llama-sim"),
            ("SIM_MAX_QUEUE", "3"),
            ("SIM_UNKNOWN", "ignored")));

        Assert.Equal(9123, o.Port);
        Assert.Equal("rtx-3090", o.GpuType);
        Assert.Equal(0.5, o.EffectiveSpeed);
        Assert.Equal("rep-7", o.ReplicaId);
        Assert.Equal("rep-7", o.Fingerprint);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), o.StartupDelay);
        Assert.Equal(4, o.BatchSlots);
        Assert.Equal(-3, o.Seed);
        Assert.Equal(TimeSpan.FromMilliseconds(2.5), o.DecodePerToken);
        Assert.Equal(TimeSpan.FromMilliseconds(0.1), o.PrefillPerToken);
        Assert.Equal(0.25, o.ErrorRate);
        Assert.Equal(0.05, o.HangRate);
        Assert.Equal(10, o.CrashAfterRequests);
        Assert.Equal("llama-sim", o.Model);
        Assert.Equal(3, o.MaxQueue);
        Assert.Empty(o.Validate());
    }

    [Fact]
    public void FromEnvironment_with_nothing_set_gives_defaults_and_empty_values_count_as_unset()
    {
        var o = SimOptions.FromEnvironment(Env(("PORT", ""), ("SIM_SEED", "  ")));
        Assert.Equal(8000, o.Port);
        Assert.Equal(42, o.Seed);
    }

    [Fact]
    public void SIM_SPEED_overrides_the_gpu_speed()
    {
        var o = SimOptions.FromEnvironment(Env(("SHOAL_GPU_TYPE", "rtx-3090"), ("SIM_SPEED", "3")));
        Assert.Equal(3.0, o.EffectiveSpeed);
    }

    [Theory]
    [InlineData("PORT", "eighty")]
    [InlineData("PORT", "70000")]
    [InlineData("PORT", "-1")]
    [InlineData("SIM_BATCH_SLOTS", "0")]
    [InlineData("SIM_BATCH_SLOTS", "1.5")]
    [InlineData("SIM_SEED", "abc")]
    [InlineData("SIM_DECODE_MS", "fast")]
    [InlineData("SIM_DECODE_MS", "-2")]
    [InlineData("SIM_PREFILL_MS", "NaN")]
    [InlineData("SIM_ERROR_RATE", "1.5")]
    [InlineData("SIM_HANG_RATE", "-0.1")]
    [InlineData("SIM_CRASH_AFTER", "0")]
    [InlineData("SIM_STARTUP_DELAY_MS", "soon")]
    [InlineData("SIM_SPEED", "0")]
    public void FromEnvironment_rejects_bad_values_naming_the_variable(string name, string value)
    {
        var e = Assert.Throws<FormatException>(() => SimOptions.FromEnvironment(Env((name, value))));
        Assert.Contains(name, e.Message, StringComparison.Ordinal);
        Assert.Contains(value.Trim(), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_lists_every_problem_clearly()
    {
        var o = new SimOptions
        {
            Host = "not a host",
            Port = 70000,
            Model = " ",
            BatchSlots = 0,
            MaxQueue = -1,
            ErrorRate = 2,
            HangRate = -1,
            SpeedFactor = 0,
            DefaultMaxTokens = 0,
            CrashAfterRequests = 0,
            StartupDelay = TimeSpan.FromSeconds(-1),
        };
        var errors = o.Validate();
        Assert.Contains(errors, e => e.Contains("host", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("port", StringComparison.Ordinal) && e.Contains("70000", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("model", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("batch slots", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("max queue", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("error rate", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("hang rate", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("speed", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("max tokens", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("crash-after", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("startup delay", StringComparison.Ordinal));
        var thrown = Assert.Throws<ArgumentException>(() => SimServer.Build(o));
        Assert.Contains("batch slots", thrown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Error_and_hang_rates_together_must_not_exceed_one()
    {
        var o = new SimOptions { ErrorRate = 0.6, HangRate = 0.6 };
        Assert.Contains(o.Validate(), e => e.Contains("must not exceed 1", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("rtx-4090", 1.0)]
    [InlineData("rtx-3090", 0.5)]
    [InlineData("h100", 2.5)]
    [InlineData("t4", 0.15)]
    [InlineData("some-future-gpu", 1.0)]
    public void Gpu_speed_table_matches_the_catalogue(string slug, double speed)
    {
        Assert.Equal(speed, GpuSpeeds.For(slug));
        Assert.Equal(speed, new SimOptions { GpuType = slug }.EffectiveSpeed);
    }
}
