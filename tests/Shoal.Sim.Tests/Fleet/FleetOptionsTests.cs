using Shoal.Sim.Fleet;

namespace Shoal.Sim.Tests.Fleet;

public sealed class FleetOptionsTests
{
    [Fact]
    public void Defaults_with_a_token_are_valid()
    {
        Assert.Empty(new FleetOptions { Token = "shoal_pt_x" }.Validate());
    }

    [Fact]
    public void A_credentials_file_alone_is_enough()
    {
        Assert.Empty(new FleetOptions { CredentialsFile = "/tmp/fleet.jsonl" }.Validate());
    }

    [Theory]
    [InlineData("ftp://host", null, 10, "fleet", 0, 0, 0, "--server")]
    [InlineData("http://127.0.0.1:7400", null, 10, "fleet", 0, 0, 0, "provisioning token")]
    [InlineData("http://127.0.0.1:7400", "t", 0, "fleet", 0, 0, 0, "--nodes")]
    [InlineData("http://127.0.0.1:7400", "t", 10, "Fleet_1", 0, 0, 0, "--name-prefix")]
    [InlineData("http://127.0.0.1:7400", "t", 10, "fleet", -1, 0, 0, "--churn")]
    [InlineData("http://127.0.0.1:7400", "t", 10, "fleet", 0, 6, 5, "--kill and --silence")]
    public void Bad_values_are_named(string server, string? token, int nodes, string prefix, double churn, int kill, int silence, string named)
    {
        var errors = new FleetOptions { Server = server, Token = token, Nodes = nodes, NamePrefix = prefix, ChurnPerMinute = churn, Kill = kill, Silence = silence }.Validate();
        Assert.Contains(errors, e => e.Contains(named, StringComparison.Ordinal));
    }

    [Fact]
    public void The_simulator_refuses_invalid_options()
    {
        Assert.Throws<ArgumentException>(() => new FleetSimulator(new FleetOptions { Token = null }));
    }

    [Fact]
    public void A_malformed_credentials_file_is_named_with_its_line()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(file, ["""{"name":"fleet-00000","nodeId":"n-1","secret":"s"}""", "not json"]);
            var e = Assert.Throws<FormatException>(() => new FleetSimulator(new FleetOptions { CredentialsFile = file }));
            Assert.Contains("line 2", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        var recorder = new LatencyRecorder();
        for (var i = 1; i <= 100; i++) recorder.Add(i);
        Assert.Equal(99, recorder.Percentile(99));
        Assert.Equal(50, recorder.Percentile(50));
        Assert.Equal(100, recorder.Drain().Length);
        Assert.Null(recorder.Percentile(99));
    }
}
