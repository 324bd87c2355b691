using System.Text.Json;
using Shoal.Cli.Interaction;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Interaction;

public sealed class RenderingTests
{
    private readonly TestConsole _stdout = new();
    private readonly TestConsole _stderr = new();
    private readonly ConsoleInteractionService _interaction;

    public RenderingTests()
    {
        _interaction = new ConsoleInteractionService(_stdout.Console, _stderr.Console);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public void Clusters_table_has_a_row_per_cluster_with_ready_over_desired()
    {
        _interaction.Write(Views.Clusters([Samples.Cluster("alpha", replicas: 3, ready: 1), Samples.Cluster("beta") with { GpuCount = 2 }]));
        var lines = Lines(_stdout.Output);
        var header = Assert.Single(lines, l => l.StartsWith("NAME", StringComparison.Ordinal));
        Assert.Contains("ENDPOINT", header, StringComparison.Ordinal);
        var alpha = Assert.Single(lines, l => l.StartsWith("alpha", StringComparison.Ordinal));
        Assert.Matches(@"alpha\s+shoal/sim\s+rtx-4090\s+1/3\s+3\s+http://127\.0\.0\.1:8080/c/alpha", alpha);
        var beta = Assert.Single(lines, l => l.StartsWith("beta", StringComparison.Ordinal));
        Assert.Contains("2× rtx-4090", beta, StringComparison.Ordinal);
        Assert.Empty(_stderr.Output);
    }

    [Fact]
    public void Markup_like_text_from_the_server_is_printed_literally()
    {
        _interaction.Write(Views.Clusters([Samples.Cluster() with { Image = "img[red]x[/]" }]));
        Assert.Contains("img[red]x[/]", _stdout.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Status_shows_replicas_with_cold_start_parts()
    {
        var status = Samples.Status(
            Samples.Cluster(replicas: 2, ready: 1),
            Samples.Replica("r-ready", ReplicaState.Ready),
            Samples.Replica("r-pending", ReplicaState.Pending, reason: "no node with a free rtx-4090", nodeName: null));
        _interaction.Write(Views.ClusterStatus(status));
        var lines = Lines(_stdout.Output);
        Assert.Contains(lines, l => l.StartsWith("replicas", StringComparison.Ordinal) && l.Contains("1/2 ready", StringComparison.Ordinal));
        var ready = Assert.Single(lines, l => l.StartsWith("r-ready", StringComparison.Ordinal));
        Assert.Matches(@"r-ready\s+gpu-box-1\s+0\s+ready\s+yes\s+-\s+1\s+12ms\s+1\.4s\s+2m05s", ready);
        var pending = Assert.Single(lines, l => l.StartsWith("r-pending", StringComparison.Ordinal));
        Assert.Matches(@"r-pending\s+-\s+-\s+pending\s+no\s+no node with a free rtx-4090\s+1\s+-\s+-\s+-", pending);
    }

    [Fact]
    public void Nodes_table_groups_gpus_and_shows_last_seen()
    {
        var now = Samples.T0.AddMinutes(10);
        _interaction.Write(Views.Nodes(
            [
                Samples.Node("box", now.AddSeconds(-5), "rtx-4090", "rtx-4090"),
                Samples.Node("wobbly", now.AddSeconds(-1), "rtx-3090") with { Reliability = 0.25, RecentDisconnects = 3, Flapping = true },
            ], now));
        var row = Assert.Single(Lines(_stdout.Output), l => l.StartsWith("n-box", StringComparison.Ordinal));
        Assert.Matches(@"n-box\s+box\s+ready\s+2× rtx-4090\s+1\s+1\s+-\s+1\.00\s+5s ago", row);
        var wobbly = Assert.Single(Lines(_stdout.Output), l => l.StartsWith("n-wobbly", StringComparison.Ordinal));
        Assert.Matches(@"n-wobbly\s+wobbly\s+ready\s+1× rtx-3090\s+1\s+1\s+-\s+0\.25 flapping \(3 drops\)\s+1s ago", wobbly);
    }

    [Fact]
    public void Nodes_table_shows_pending_approval_labels_refused_addresses_and_simulated_gpus()
    {
        var now = Samples.T0.AddMinutes(10);
        var simulated = Samples.Node("sim", now, "rtx-4090");
        simulated = simulated with { Hardware = simulated.Hardware with { Gpus = [simulated.Hardware.Gpus[0] with { Simulated = true }] } };
        var mixed = Samples.Node("mixed", now, "rtx-4090", "rtx-4090");
        mixed = mixed with { Hardware = mixed.Hardware with { Gpus = [mixed.Hardware.Gpus[0], mixed.Hardware.Gpus[1] with { Simulated = true }] } };
        _interaction.Write(Views.Nodes(
            [
                Samples.Node("waiting", now, "rtx-4090") with { Pending = true, Labels = ["eu", "trusted"] },
                Samples.Node("rogue", now, "rtx-4090") with { AddressRefused = "address 127.0.0.1 is loopback" },
                simulated,
                mixed,
            ], now));
        var lines = Lines(_stdout.Output);
        Assert.Matches(@"n-waiting\s+waiting\s+pending approval, ready\s+1× rtx-4090\s+1\s+1\s+eu,trusted\s", Assert.Single(lines, l => l.StartsWith("n-waiting", StringComparison.Ordinal)));
        Assert.Matches(@"n-rogue\s+rogue\s+ready, address refused\s", Assert.Single(lines, l => l.StartsWith("n-rogue", StringComparison.Ordinal)));
        Assert.Contains("1× rtx-4090 (simulated)", Assert.Single(lines, l => l.StartsWith("n-sim", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Contains("1× rtx-4090, 1× rtx-4090 (simulated)", Assert.Single(lines, l => l.StartsWith("n-mixed", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public void Json_mode_writes_only_the_document_to_stdout_and_messages_to_stderr()
    {
        _interaction.Format = OutputFormat.Json;
        _interaction.DisplayMessage("deploying…");
        _interaction.Write(Views.Clusters([Samples.Cluster()]));
        _interaction.WriteJson([Samples.Cluster("alpha"), Samples.Cluster("beta")], ShoalJsonContext.Default.ClusterDtoArray);

        var parsed = JsonSerializer.Deserialize(_stdout.Output, ShoalJsonContext.Default.ClusterDtoArray);
        Assert.NotNull(parsed);
        Assert.Equal(["alpha", "beta"], parsed.Select(c => c.Name));
        Assert.Contains("\"readyReplicas\": 2", _stdout.Output, StringComparison.Ordinal);
        Assert.Contains("deploying…", _stderr.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Errors_go_to_stderr_with_their_details()
    {
        _interaction.DisplayError("it broke [badly]", ["r-1: pending (no node)"]);
        Assert.Empty(_stdout.Output);
        Assert.Contains("error: it broke [badly]", _stderr.Output, StringComparison.Ordinal);
        Assert.Contains("  r-1: pending (no node)", _stderr.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Progress_without_a_terminal_writes_each_changed_summary_once()
    {
        var result = await _interaction.ShowProgressAsync(progress =>
        {
            progress.Report(new Spectre.Console.Text("v"), "0/2 ready");
            progress.Report(new Spectre.Console.Text("v"), "0/2 ready");
            progress.Report(new Spectre.Console.Text("v"), "2/2 ready");
            return Task.FromResult(42);
        });
        Assert.Equal(42, result);
        Assert.Equal(["0/2 ready", "2/2 ready"], Lines(_stdout.Output));
    }

    [Fact]
    public async Task Progress_on_a_terminal_renders_the_live_view()
    {
        var writer = new StringWriter();
        var terminal = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Ansi = Spectre.Console.AnsiSupport.Yes,
            ColorSystem = Spectre.Console.ColorSystemSupport.NoColors,
            Interactive = Spectre.Console.InteractionSupport.Yes,
            Out = new Spectre.Console.AnsiConsoleOutput(writer),
        });
        var interaction = new ConsoleInteractionService(terminal, _stderr.Console);
        var status = Samples.Status(Samples.Cluster(replicas: 1), Samples.Replica("r-live", ReplicaState.Starting));

        await interaction.ShowProgressAsync(progress =>
        {
            progress.Report(Views.DeployProgress(status), Views.ProgressSummary(status));
            return Task.FromResult(0);
        });

        Assert.Contains("r-live", writer.ToString(), StringComparison.Ordinal);
        Assert.Contains("0/1 replicas ready (1 starting)", writer.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Progress_summary_counts_states_and_missing_replicas()
    {
        var status = Samples.Status(
            Samples.Cluster(replicas: 4, ready: 1),
            Samples.Replica("a", ReplicaState.Ready),
            Samples.Replica("b", ReplicaState.Pulling),
            Samples.Replica("c", ReplicaState.Pending, nodeName: null));
        Assert.Equal("1/4 replicas ready (1 pending, 1 pulling, 1 not created yet)", Views.ProgressSummary(status));
    }
}
