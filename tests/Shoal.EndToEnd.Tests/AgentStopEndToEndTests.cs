using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// Issue 14, must-show 3b: a clean agent stop is not a drop. A real <c>shoal agent</c> stopped with
/// SIGTERM says goodbye (a WebSocket close with "agent stopping"), so routine restarts leave the
/// node's reliability alone; a kill -9, which cannot say goodbye, still counts.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class AgentStopEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public async Task An_agent_stopped_with_SIGTERM_and_started_again_five_times_keeps_its_reliability()
    {
        using var dir = new TempDirectory("shoal-stop");
        var apiPort = FreePort.Next();
        var api = $"http://127.0.0.1:{apiPort}";
        var processes = new List<ShoalProcess>();
        using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(30) };
        var server = ShoalProcess.Start("server",
            ["server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{FreePort.Next()}", "--data-dir", dir.Combine("server"), "--log-level", "Information", "--allow-simulated-gpus", "--allow-loopback-nodes"]);
        processes.Add(server);
        try
        {
            await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"));
            var token = await DeployEndToEndTests.CreateTokenAsync(http, 1);
            ShoalProcess StartAgent()
            {
                var agent = ShoalProcess.Start("agent",
                [
                    "agent", "--server", api, "--token", token, "--name", "steady", "--simulate-gpus", "rtx-4090:1",
                    "--data-dir", dir.Combine("agent"), "--runtime", "process", "--enable-process-runtime", "--log-level", "Information",
                ]);
                processes.Add(agent);
                return agent;
            }

            async Task<NodeDto> WaitForStateAsync(NodeState state) =>
                (await Eventually.GetAsync(() => DeployEndToEndTests.NodesAsync(http), n => n.Any(x => x.Name == "steady" && x.State == state), TimeSpan.FromSeconds(60), $"node {state}"))
                .Single(x => x.Name == "steady");

            var agent = StartAgent();
            var first = await WaitForStateAsync(NodeState.Ready);
            Assert.Equal(0, first.RecentDisconnects);

            for (var i = 1; i <= 5; i++)
            {
                await agent.StopAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(0, await agent.WaitForExitAsync(TimeSpan.FromSeconds(5)));
                var gone = await WaitForStateAsync(NodeState.Disconnected);
                Assert.Equal(i, CountOf(server.Output, "disconnected: the agent stopped (planned: not a drop)"));
                Assert.Equal(0, gone.RecentDisconnects);
                agent = StartAgent();
                var back = await WaitForStateAsync(NodeState.Ready);
                output.WriteLine($"restart {i}: reliability {back.Reliability}, recent disconnects {back.RecentDisconnects}, flapping {back.Flapping}");
                Assert.Equal(0, back.RecentDisconnects);
                Assert.False(back.Flapping);
                // Only the share of the window it has been up since the last start is missing (at most a tenth).
                Assert.True(back.Reliability >= 0.9, $"reliability {back.Reliability} after {i} clean restarts");
            }

            Assert.DoesNotContain("Lost the connection", agent.Output, StringComparison.Ordinal);

            // A crash cannot say goodbye: it is a drop, as before.
            await agent.KillAsync();
            var dropped = await Eventually.GetAsync(() => DeployEndToEndTests.NodesAsync(http), n => n.Any(x => x.Name == "steady" && x.RecentDisconnects == 1), TimeSpan.FromSeconds(30), "the kill counted as a drop");
            Assert.True(dropped.Single(x => x.Name == "steady").Reliability <= 0.5);
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name}\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    private static int CountOf(string text, string what)
    {
        var count = 0;
        for (var at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
