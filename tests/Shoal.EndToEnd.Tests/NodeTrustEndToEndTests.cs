using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// Nodes trusted by the operator, not by themselves, with real processes: a server that does not
/// allow loopback nodes, a real agent in direct mode at 127.0.0.1 (the address the rogue
/// node used), and a real agent admitted by a manual-approval token made with the CLI.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class NodeTrustEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_loopback_direct_node_gets_no_work_and_a_pending_node_gets_work_only_once_approved()
    {
        using var dir = new TempDirectory("shoal-e2e-trust");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var api = $"http://127.0.0.1:{apiPort}";
        var processes = new List<ShoalProcess>();
        using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(30) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(30) };
        try
        {
            // Simulated GPUs are allowed (there is no GPU here); loopback nodes are not.
            processes.Add(ShoalProcess.Start("server",
                ["server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
                 "--log-level", "Warning", "--allow-simulated-gpus"]));
            await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"), edge);
            var operatorKey = http.DefaultRequestHeaders.Authorization!.Parameter!;

            // A node in direct mode saying edges should connect to 127.0.0.1, even with a token that allows direct mode.
            var direct = await CliAsync(operatorKey, "tokens", "create", "--direct", "-o", "json", "--addr", api);
            processes.Add(ShoalProcess.Start("direct",
            [
                "agent", "--server", api, "--token", JsonSerializer.Deserialize(direct, ShoalJsonContext.Default.TokenCreatedDto)!.Token,
                "--name", "direct", "--direct", "--address", "127.0.0.1", "--simulate-gpus", "rtx-4090:4",
                "--data-dir", dir.Combine("direct"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
            ]));
            // A node admitted by a token that asks for manual approval (tunnel mode).
            var manual = JsonSerializer.Deserialize(await CliAsync(operatorKey, "tokens", "create", "--approve", "manual", "--label", "trusted", "-o", "json", "--addr", api),
                ShoalJsonContext.Default.TokenCreatedDto)!;
            Assert.Equal(TokenApproval.Manual, manual.Approve);
            Assert.Equal(["trusted"], manual.Labels);
            processes.Add(ShoalProcess.Start("waiting",
            [
                "agent", "--server", api, "--token", manual.Token, "--name", "waiting", "--simulate-gpus", "rtx-4090:1",
                "--data-dir", dir.Combine("waiting"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
            ]));
            var nodes = await Eventually.GetAsync(() => DeployEndToEndTests.NodesAsync(http), n => n.Count(x => x.State == NodeState.Ready) == 2, TimeSpan.FromSeconds(30), "two connected nodes");
            Assert.Contains("loopback", nodes.Single(n => n.Name == "direct").AddressRefused, StringComparison.Ordinal);
            Assert.True(nodes.Single(n => n.Name == "waiting").Pending);
            Assert.Equal(["trusted"], nodes.Single(n => n.Name == "waiting").Labels);
            var listed = await CliAsync(operatorKey, "nodes", "--addr", api);
            Assert.Contains("address refused", listed, StringComparison.Ordinal);
            Assert.Contains("pending approval", listed, StringComparison.Ordinal);

            Assert.Equal(HttpStatusCode.Created, (await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                QueueTimeoutSeconds = 0,
                Env = new() { ["SIM_DECODE_MS"] = "1" },
            }, ShoalJsonContext.Default.CreateClusterRequest)).StatusCode);

            // Neither node gets the replica; the pending event names both and says why.
            var events = await Eventually.GetAsync(() => http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray),
                e => e!.Any(x => x.Type == ClusterEventTypes.Pending), TimeSpan.FromSeconds(30), "pending event");
            var pending = events!.First(x => x.Type == ClusterEventTypes.Pending).Message;
            Assert.Contains("direct: address 127.0.0.1 is loopback", pending, StringComparison.Ordinal);
            Assert.Contains("waiting waits for approval", pending, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await edge.GetAsync("/c/demo/v1/models")).StatusCode);

            // The operator approves the node: the replica goes there and serves through its tunnels.
            Assert.Contains("approved waiting", await CliAsync(operatorKey, "nodes", "approve", "waiting", "--addr", api), StringComparison.Ordinal);
            var status = await DeployEndToEndTests.WaitForReadyAsync(http, 1);
            Assert.Equal("waiting", Assert.Single(status.Replicas).NodeName);
            var served = await DeployEndToEndTests.SendChatsAsync(edge, 5);
            Assert.Equal(5, served.Values.Sum());
            Assert.Equal(0, (await DeployEndToEndTests.NodesAsync(http)).Single(n => n.Name == "direct").Replicas);
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    /// <summary>Runs the real <c>shoal</c> CLI to completion; its standard output, after asserting exit code 0.</summary>
    private static async Task<string> CliAsync(string apiKey, params string[] args)
    {
        var info = new ProcessStartInfo(ShoalProcess.ExecutablePath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        info.Environment["SHOAL_API_KEY"] = apiKey;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"shoal {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}");
        return await stdout;
    }
}
