namespace Shoal.Sim.Tests;

public sealed class LatencyModelTests
{
    [Fact]
    public void Rtx_3090_is_slower_than_rtx_4090()
    {
        var fast = LatencyModel.From(new SimOptions { GpuType = "rtx-4090" });
        var slow = LatencyModel.From(new SimOptions { GpuType = "rtx-3090" });

        Assert.Equal(TimeSpan.FromMilliseconds(8), fast.DecodeStep(1));
        Assert.Equal(TimeSpan.FromMilliseconds(16), slow.DecodeStep(1));
        Assert.True(slow.FirstToken(100, 1) > fast.FirstToken(100, 1));
        Assert.True(LatencyModel.From(new SimOptions { GpuType = "h100" }).DecodeStep(1) < fast.DecodeStep(1));
    }

    [Fact]
    public void Decode_step_grows_with_the_batch()
    {
        var model = new LatencyModel(TimeSpan.Zero, TimeSpan.FromMilliseconds(10), 0.1, 1.0);
        Assert.Equal(TimeSpan.FromMilliseconds(10), model.DecodeStep(1));
        Assert.Equal(TimeSpan.FromMilliseconds(11), model.DecodeStep(2));
        Assert.Equal(TimeSpan.FromMilliseconds(17), model.DecodeStep(8));
        Assert.Equal(model.DecodeStep(1), model.DecodeStep(0));
    }

    [Fact]
    public void Time_to_first_token_grows_with_prompt_length()
    {
        var model = new LatencyModel(TimeSpan.FromMilliseconds(0.05), TimeSpan.FromMilliseconds(8), 0.1, 1.0);
        Assert.Equal(TimeSpan.FromMilliseconds(8.5), model.FirstToken(10, 1));
        Assert.Equal(TimeSpan.FromMilliseconds(58), model.FirstToken(1000, 1));
        Assert.True(model.FirstToken(1000, 4) > model.FirstToken(1000, 1));
    }

    [Fact]
    public void Speed_divides_every_delay()
    {
        var model = new LatencyModel(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10), 0, 2.0);
        Assert.Equal(TimeSpan.FromMilliseconds(5), model.DecodeStep(1));
        Assert.Equal(TimeSpan.FromMilliseconds(10), model.FirstToken(10, 1));
    }
}
