using Shoal.Core.Gpus;

namespace Shoal.Core.Tests.Gpus;

public sealed class GpuCatalogTests
{
    [Theory]
    [InlineData("NVIDIA GeForce RTX 4090", 24564, "rtx-4090")]
    [InlineData("NVIDIA GeForce RTX 3090", 24576, "rtx-3090")]
    [InlineData("NVIDIA GeForce RTX 3090 Ti", 24564, "rtx-3090-ti")]
    [InlineData("NVIDIA A100-SXM4-80GB", 81920, "a100-80gb")]
    [InlineData("NVIDIA A100-PCIE-40GB", 40960, "a100-40gb")]
    [InlineData("NVIDIA A100 80GB PCIe", 81920, "a100-80gb")]
    [InlineData("NVIDIA H100 80GB HBM3", 81559, "h100")]
    [InlineData("NVIDIA H100 PCIe", 81559, "h100")]
    [InlineData("NVIDIA H200", 143771, "h200")]
    [InlineData("NVIDIA L40S", 46068, "l40s")]
    [InlineData("NVIDIA L4", 23034, "l4")]
    [InlineData("Tesla T4", 15360, "t4")]
    [InlineData("Tesla V100-SXM2-32GB", 32768, "v100")]
    [InlineData("NVIDIA RTX A6000", 49140, "rtx-a6000")]
    [InlineData("NVIDIA RTX 6000 Ada Generation", 49140, "rtx-6000-ada")]
    [InlineData("NVIDIA GeForce RTX 4090 D", 24564, "rtx-4090-d")]
    [InlineData("NVIDIA GeForce GTX 1080 Ti", 11264, "gtx-1080-ti")]
    public void Nvidia_smi_names_map_to_slugs(string name, long memory, string slug) =>
        Assert.Equal(slug, GpuCatalog.SlugFromName(name, memory));

    [Fact]
    public void The_3090_is_half_as_fast_as_the_4090()
    {
        Assert.Equal(1.0, GpuCatalog.SpeedFactor("rtx-4090"));
        Assert.Equal(0.5, GpuCatalog.SpeedFactor("rtx-3090"));
        Assert.Equal(1.0, GpuCatalog.SpeedFactor("no-such-gpu"));
    }

    [Fact]
    public void Slugs_are_unique_and_known()
    {
        Assert.Equal(GpuCatalog.All.Count, GpuCatalog.All.Select(t => t.Slug).Distinct().Count());
        Assert.True(GpuCatalog.IsKnown("rtx-4090"));
        Assert.False(GpuCatalog.IsKnown("RTX-4090"));
    }
}
