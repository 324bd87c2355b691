using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Hardware;

namespace Shoal.Agent.Tests.Hardware;

public class SimulatedGpusTests
{
    [Fact]
    public void Declares_gpus_of_one_type()
    {
        var gpus = SimulatedGpus.Parse("rtx-4090:2");

        Assert.Equal(2, gpus.Count);
        Assert.All(gpus, g =>
        {
            Assert.True(g.Simulated);
            Assert.Equal("rtx-4090", g.Type);
            Assert.Equal(24564, g.MemoryMiB);
            Assert.Equal("NVIDIA GeForce RTX 4090", g.Name);
        });
        Assert.Equal(["GPU-sim-0", "GPU-sim-1"], gpus.Select(g => g.Uuid));
        Assert.Equal([0, 1], gpus.Select(g => g.Index));
    }

    [Fact]
    public void Declares_mixed_types_indexed_in_order()
    {
        var gpus = SimulatedGpus.Parse(" rtx-4090:1 , RTX-3090:1,h100");

        Assert.Equal(["rtx-4090", "rtx-3090", "h100"], gpus.Select(g => g.Type));
        Assert.Equal([0, 1, 2], gpus.Select(g => g.Index));
        Assert.Equal(24576, gpus[1].MemoryMiB);
    }

    [Theory]
    [InlineData("gtx-1080:1", "not a known GPU type")]
    [InlineData("rtx-4090:0", "must be 1 to 16")]
    [InlineData("rtx-4090:17", "must be 1 to 16")]
    [InlineData("rtx-4090:two", "is not a GPU count")]
    [InlineData("rtx-4090:-1", "is not a GPU count")]
    [InlineData("rtx-4090:2,,rtx-3090:1", "empty entry")]
    [InlineData("", "empty")]
    [InlineData("rtx-4090:10,rtx-3090:10", "at most 16")]
    public void Invalid_specs_fail_with_a_clear_error(string spec, string expected)
    {
        var ex = Assert.Throws<AgentConfigurationException>(() => SimulatedGpus.Parse(spec));

        Assert.Contains("--simulate-gpus", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_nvidia_smi_means_no_gpus()
    {
        var detector = new GpuDetector("/nonexistent/nvidia-smi-" + Guid.NewGuid().ToString("N"), NullLogger<GpuDetector>.Instance);

        var gpus = await detector.DetectAsync(CancellationToken.None);

        Assert.Empty(gpus);
    }

    [Fact]
    public async Task Detector_reads_nvidia_smi_output()
    {
        using var dir = new Shoal.Testing.TempDirectory();
        var script = dir.Combine("nvidia-smi");
        await File.WriteAllTextAsync(script, "#!/bin/sh\nprintf '0, GPU-1, NVIDIA GeForce RTX 4090, 24564\\ngarbage\\n1, GPU-2, NVIDIA A100-SXM4-80GB, 81920\\n'\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var gpus = await new GpuDetector(script, NullLogger<GpuDetector>.Instance).DetectAsync(CancellationToken.None);

        Assert.Equal(["rtx-4090", "a100-80gb"], gpus.Select(g => g.Type));
    }

    [Fact]
    public void Reads_mem_total_from_proc_meminfo()
    {
        const string meminfo = "MemTotal:       131891232 kB\nMemFree:         1234 kB\n";

        Assert.Equal(128800, HardwareProbe.ParseMemTotalMiB(meminfo));
        Assert.Null(HardwareProbe.ParseMemTotalMiB("MemFree: 1 kB\n"));
    }

    [Fact]
    public void Describes_this_machine()
    {
        using var dir = new Shoal.Testing.TempDirectory();
        var hw = HardwareProbe.Describe(SimulatedGpus.Parse("rtx-4090:1"), dir.Path);

        Assert.True(hw.CpuCores >= 1);
        Assert.True(hw.MemoryMiB > 0);
        Assert.True(hw.DiskFreeMiB > 0);
        Assert.False(string.IsNullOrEmpty(hw.Hostname));
        Assert.Single(hw.Gpus);
    }
}
