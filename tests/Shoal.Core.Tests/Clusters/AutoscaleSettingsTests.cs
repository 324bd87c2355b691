using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Core.Tests.Clusters;

public sealed class AutoscaleSettingsTests
{
    private static CreateClusterRequest Valid => new() { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" };

    [Fact]
    public void Autoscaling_is_off_and_max_held_1000_by_default()
    {
        var spec = ClusterSpecValidator.Validate(Valid).Value!;
        Assert.Null(spec.Autoscale);
        Assert.Equal(1000, spec.MaxHeld);
    }

    [Fact]
    public void Settings_get_their_defaults_and_the_count_starts_within_the_bounds()
    {
        var v = ClusterSpecValidator.Validate(Valid with { Autoscale = new AutoscaleRequest { Min = 2, Max = 6 } });
        Assert.True(v.IsValid, v.Message);
        var a = v.Value!.Autoscale!;
        Assert.Equal((2, 6, 2.0, 0.0, 300, 0), (a.Min, a.Max, a.TargetWaiting, a.TargetConcurrency, a.ScaleDownWindowSeconds, a.ScaleToZeroAfterSeconds));
        Assert.Equal(2, v.Value.Replicas);
    }

    [Theory]
    [InlineData(null, 5, 2.0, 0.0, 300, 0, null, "autoscale.max is required")]
    [InlineData(3, 2, 2.0, 0.0, 300, 0, null, "autoscale.min (3) must not be above autoscale.max (2)")]
    [InlineData(1, 5, 0.0, 0.0, 300, 0, null, "autoscale needs a target")]
    [InlineData(0, 5, 2.0, 0.0, 300, 0, null, "autoscale.min 0 needs scaleToZeroAfterSeconds")]
    [InlineData(1, 5, 2.0, 0.0, 300, 600, null, "autoscale.scaleToZeroAfterSeconds needs min 0")]
    [InlineData(1, 5, 2.0, 0.0, 3601, 0, null, "autoscale.scaleDownWindowSeconds must be between 0 and 3600")]
    [InlineData(1, 5, -1.0, 0.0, 300, 0, null, "autoscale.targetWaiting must be between 0 and 10000")]
    [InlineData(1, 5, 2.0, 0.0, 300, 0, 9, "replicas (9) must be within the autoscaling bounds min 1 .. max 5")]
    public void Bad_settings_get_clear_errors(int? min, int? max, double waiting, double concurrency, int window, int toZero, int? replicas, string error)
    {
        var request = Valid with
        {
            Replicas = replicas,
            Autoscale = new AutoscaleRequest
            {
                Min = min ?? 1,
                Max = min is null ? null : max,
                TargetWaiting = waiting,
                TargetConcurrency = concurrency,
                ScaleDownWindowSeconds = window,
                ScaleToZeroAfterSeconds = toZero,
            },
        };
        var v = ClusterSpecValidator.Validate(request);
        Assert.False(v.IsValid);
        Assert.Contains(error, v.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Max_held_is_checked_and_valid_without_autoscaling()
    {
        Assert.Equal(5, ClusterSpecValidator.Validate(Valid with { MaxHeld = 5 }).Value!.MaxHeld);
        Assert.Contains("maxHeld must be between 0 and 100000", ClusterSpecValidator.Validate(Valid with { MaxHeld = -1 }).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void With_autoscaling_on_a_replica_count_is_refused_with_what_to_do_instead()
    {
        var spec = ClusterSpecValidator.Validate(Valid with { Autoscale = new AutoscaleRequest { Min = 1, Max = 4 } }).Value!;
        var v = ClusterSpecValidator.ApplyUpdate(spec, new UpdateClusterRequest { Replicas = 3 });
        Assert.False(v.IsValid);
        Assert.Contains("autoscaling owns the replica count of 'demo' (min 1, max 4)", v.Message, StringComparison.Ordinal);
        Assert.Contains("shoal autoscale demo --off", v.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Updates_change_only_the_fields_given_clamp_the_count_and_turn_off()
    {
        var spec = ClusterSpecValidator.Validate(Valid with { Replicas = 1, Autoscale = new AutoscaleRequest { Min = 1, Max = 4, TargetWaiting = 3 } }).Value!;
        var raised = ClusterSpecValidator.ApplyUpdate(spec, new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Min = 2 } });
        Assert.True(raised.IsValid, raised.Message);
        Assert.Equal((2, 4, 3.0), (raised.Value!.Autoscale!.Min, raised.Value.Autoscale.Max, raised.Value.Autoscale.TargetWaiting));
        Assert.Equal(2, raised.Value.Replicas);

        var toZero = ClusterSpecValidator.ApplyUpdate(raised.Value, new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Min = 0, ScaleToZeroAfterSeconds = 600 } });
        Assert.True(toZero.IsValid, toZero.Message);
        // Back to min 1 without naming the idle period drops it instead of failing.
        var back = ClusterSpecValidator.ApplyUpdate(toZero.Value!, new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Min = 1 } });
        Assert.True(back.IsValid, back.Message);
        Assert.Equal(0, back.Value!.Autoscale!.ScaleToZeroAfterSeconds);

        var off = ClusterSpecValidator.ApplyUpdate(back.Value, new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Off = true } });
        Assert.True(off.IsValid, off.Message);
        Assert.Null(off.Value!.Autoscale);
        Assert.Equal(2, off.Value.Replicas);

        var fixedAgain = ClusterSpecValidator.ApplyUpdate(off.Value, new UpdateClusterRequest { Replicas = 7 });
        Assert.Equal(7, fixedAgain.Value!.Replicas);

        var mixed = ClusterSpecValidator.ApplyUpdate(spec, new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Off = true, Max = 3 } });
        Assert.Contains("autoscale.off cannot be combined", mixed.Message, StringComparison.Ordinal);
    }
}
