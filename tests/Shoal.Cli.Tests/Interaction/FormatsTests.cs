using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Interaction;

public sealed class FormatsTests
{
    [Theory]
    [InlineData(12, "12ms")]
    [InlineData(999, "999ms")]
    [InlineData(1_400, "1.4s")]
    [InlineData(59_990, "59.9s")]
    [InlineData(125_000, "2m05s")]
    [InlineData(3_720_000, "1h02m")]
    [InlineData(2_592_000_000, "30d")]
    public void Durations_are_short(long ms, string expected)
    {
        Assert.Equal(expected, Formats.Duration(TimeSpan.FromMilliseconds(ms)));
    }

    [Fact]
    public void Unknown_or_negative_durations_are_a_dash()
    {
        Assert.Equal("-", Formats.Duration(null));
        Assert.Equal("-", Formats.Duration(TimeSpan.FromSeconds(-1)));
        Assert.Equal("-", Formats.Between(DateTimeOffset.UnixEpoch, null));
    }

    [Fact]
    public void Gpus_are_grouped_by_type()
    {
        var hardware = new NodeHardware
        {
            Gpus =
            [
                new GpuInfo { Index = 0, Uuid = "a", Name = "x", Type = "rtx-4090" },
                new GpuInfo { Index = 1, Uuid = "b", Name = "x", Type = "rtx-3090" },
                new GpuInfo { Index = 2, Uuid = "c", Name = "x", Type = "rtx-4090" },
            ],
        };
        Assert.Equal("2× rtx-4090, 1× rtx-3090", Formats.Gpus(hardware));
        Assert.Equal("-", Formats.Gpus(new NodeHardware()));
        var simulated = hardware with { Gpus = [.. hardware.Gpus.Select(g => g with { Simulated = true })] };
        Assert.EndsWith("(simulated)", Formats.Gpus(simulated), StringComparison.Ordinal);
    }

    [Fact]
    public void Ages_are_relative_to_now()
    {
        var now = DateTimeOffset.UnixEpoch.AddDays(10);
        Assert.Equal("5s ago", Formats.Age(now.AddSeconds(-5), now));
        Assert.Equal("3m ago", Formats.Age(now.AddMinutes(-3), now));
        Assert.Equal("2d ago", Formats.Age(now.AddDays(-2), now));
        Assert.Equal("-", Formats.Age(null, now));
    }
}
