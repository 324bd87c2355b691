using Shoal.Agent.Hardware;

namespace Shoal.Agent.Tests.Hardware;

public class NvidiaSmiParserTests
{
    [Fact]
    public void Single_rtx_4090()
    {
        var result = NvidiaSmiParser.Parse("0, GPU-5b7c3e5a-1f2d-4c1e-9a0e-2b8f5d7c9a11, NVIDIA GeForce RTX 4090, 24564\n");

        var gpu = Assert.Single(result.Gpus);
        Assert.Empty(result.Problems);
        Assert.Equal(0, gpu.Index);
        Assert.Equal("GPU-5b7c3e5a-1f2d-4c1e-9a0e-2b8f5d7c9a11", gpu.Uuid);
        Assert.Equal("NVIDIA GeForce RTX 4090", gpu.Name);
        Assert.Equal("rtx-4090", gpu.Type);
        Assert.Equal(24564, gpu.MemoryMiB);
        Assert.False(gpu.Simulated);
    }

    [Fact]
    public void Two_rtx_3090()
    {
        const string output = """
            0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA GeForce RTX 3090, 24576
            1, GPU-bbbbbbbb-0000-0000-0000-000000000001, NVIDIA GeForce RTX 3090, 24576
            """;

        var result = NvidiaSmiParser.Parse(output);

        Assert.Equal([0, 1], result.Gpus.Select(g => g.Index));
        Assert.All(result.Gpus, g => Assert.Equal("rtx-3090", g.Type));
        Assert.Equal("GPU-bbbbbbbb-0000-0000-0000-000000000001", result.Gpus[1].Uuid);
    }

    [Fact]
    public void Eight_a100_sxm4_80gb()
    {
        var lines = Enumerable.Range(0, 8).Select(i => $"{i}, GPU-a100-{i:D4}, NVIDIA A100-SXM4-80GB, 81920");

        var result = NvidiaSmiParser.Parse(string.Join("\n", lines) + "\n");

        Assert.Equal(8, result.Gpus.Count);
        Assert.All(result.Gpus, g => Assert.Equal("a100-80gb", g.Type));
        Assert.All(result.Gpus, g => Assert.Equal(81920, g.MemoryMiB));
        Assert.Equal(Enumerable.Range(0, 8), result.Gpus.Select(g => g.Index));
    }

    [Fact]
    public void H100_80gb_hbm3()
    {
        var result = NvidiaSmiParser.Parse("0, GPU-h100, NVIDIA H100 80GB HBM3, 81559");

        Assert.Equal("h100", Assert.Single(result.Gpus).Type);
    }

    [Fact]
    public void Unknown_model_gets_a_slug_from_its_name()
    {
        var result = NvidiaSmiParser.Parse("0, GPU-d, NVIDIA GeForce RTX 4090 D, 24564");

        var gpu = Assert.Single(result.Gpus);
        Assert.Equal("rtx-4090-d", gpu.Type);
        Assert.Equal("NVIDIA GeForce RTX 4090 D", gpu.Name);
    }

    [Fact]
    public void Trailing_spaces_CRLF_and_blank_lines_are_tolerated()
    {
        const string output = "\n  0, GPU-x , NVIDIA GeForce RTX 4090 , 24564  \r\n\r\n   \n1, GPU-y, NVIDIA GeForce RTX 3090, 24576\r\n\n";

        var result = NvidiaSmiParser.Parse(output);

        Assert.Empty(result.Problems);
        Assert.Equal(["GPU-x", "GPU-y"], result.Gpus.Select(g => g.Uuid));
        Assert.Equal(["rtx-4090", "rtx-3090"], result.Gpus.Select(g => g.Type));
    }

    [Fact]
    public void Memory_not_available_falls_back_to_the_catalogue()
    {
        var result = NvidiaSmiParser.Parse("0, GPU-x, NVIDIA GeForce RTX 4090, [N/A]");

        Assert.Equal(24564, Assert.Single(result.Gpus).MemoryMiB);
    }

    [Theory]
    [InlineData("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "expected 4")]
    [InlineData("x, GPU-1, NVIDIA GeForce RTX 4090, 24564", "not a number")]
    [InlineData("0, GPU-1, NVIDIA GeForce RTX 4090, lots", "not a number of MiB")]
    [InlineData("0, , NVIDIA GeForce RTX 4090, 24564", "no uuid or name")]
    [InlineData("0, GPU-1, NVIDIA, GeForce, 24564", "expected 4")]
    public void Garbage_lines_are_skipped_with_a_clear_problem(string garbage, string expected)
    {
        var result = NvidiaSmiParser.Parse($"0, GPU-ok, NVIDIA GeForce RTX 4090, 24564\n{garbage}\n");

        Assert.Equal("GPU-ok", Assert.Single(result.Gpus).Uuid);
        var problem = Assert.Single(result.Problems);
        Assert.StartsWith("line 2:", problem, StringComparison.Ordinal);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_output_means_no_gpus()
    {
        var result = NvidiaSmiParser.Parse("");

        Assert.Empty(result.Gpus);
        Assert.Empty(result.Problems);
    }
}
