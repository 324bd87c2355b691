using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary><c>shoal dev</c> as a user runs it: one command, a working endpoint, a client config, and a clean Ctrl-C.</summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class DevEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Dev_serves_the_demo_cluster_writes_the_client_config_and_stops_cleanly()
    {
        using var dir = new TempDirectory("shoal-dev");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var config = dir.Combine("config.json");
        var dev = ShoalProcess.Start("dev",
            ["dev", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("data")],
            new Dictionary<string, string> { ["SHOAL_CONFIG"] = config });
        string[] replicaIds = [];
        try
        {
            await Eventually.GetAsync(() => Task.FromResult(dev.Output), o => o.Contains("curl -s", StringComparison.Ordinal) || dev.HasExited, TimeSpan.FromSeconds(60), "dev ready");
            Assert.False(dev.HasExited, dev.Output);
            Assert.Contains($"curl -s http://127.0.0.1:{edgePort}/c/demo/v1/chat/completions", dev.Output, StringComparison.Ordinal);
            Assert.Contains($"127.0.0.1:{apiPort}", await File.ReadAllTextAsync(config));

            // dev wrote the operator key into the client config (0600) and an endpoint key to demo.key (0600).
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));
            var demoKeyFile = dir.Combine("data", "demo.key");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(demoKeyFile));
            var demoKey = File.ReadAllText(demoKeyFile).Trim();
            Assert.Contains(demoKey, dev.Output, StringComparison.Ordinal);
            var operatorKey = File.ReadAllText(dir.Combine("data", "server", "operator.key")).Trim();
            Assert.Contains(operatorKey, await File.ReadAllTextAsync(config), StringComparison.Ordinal);
            Assert.DoesNotContain(operatorKey, dev.Output, StringComparison.Ordinal);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}") }.WithKey(operatorKey);
            var nodes = await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray);
            Assert.Equal(["node-1", "node-2", "node-3"], nodes!.Select(n => n.Name).Order().ToArray());
            var status = await Eventually.GetAsync(() => http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto),
                s => s!.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(30), "demo ready");
            replicaIds = status!.Replicas.Select(r => r.Id).ToArray();

            // The printed curl, as a request.
            using var edge = new HttpClient();
            using (var anonymous = new StringContent("{\"model\":\"shoal-sim\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}", Encoding.UTF8, "application/json"))
            {
                Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await edge.PostAsync($"http://127.0.0.1:{edgePort}/c/demo/v1/chat/completions", anonymous)).StatusCode);
            }
            edge.WithKey(demoKey);
            using var body = new StringContent("{\"model\":\"shoal-sim\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}", Encoding.UTF8, "application/json");
            var response = await edge.PostAsync($"http://127.0.0.1:{edgePort}/c/demo/v1/chat/completions", body);
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            Assert.Contains("\"choices\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.Equal(2, replicaIds.Count(ReplicaProcesses.Find().ContainsKey));

            // Ctrl-C (SIGTERM here) stops everything and leaves no process behind.
            await dev.StopAsync(TimeSpan.FromSeconds(30));
            Assert.True(dev.HasExited);
            await Eventually.GetAsync(() => Task.FromResult(replicaIds.Count(ReplicaProcesses.Find().ContainsKey)), n => n == 0, TimeSpan.FromSeconds(10), "replica processes gone");
        }
        catch
        {
            output.WriteLine(dev.Output);
            throw;
        }
        finally
        {
            await dev.DisposeAsync();
        }
    }
    /// <summary>
    /// Issue 14, must-show 5: Ctrl-C in a terminal signals the whole foreground process group at
    /// once (dev, and before this fix every replica too). Dev stops in order: no warning or error,
    /// no replica restarted, nothing left running, exit code 0. The same for SIGTERM to the group.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(15)]
    public async Task Dev_stopped_by_a_signal_to_its_whole_process_group_stops_quietly_and_completely(int signal)
    {
        using var dir = new TempDirectory("shoal-dev-sig");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var dev = ShoalProcess.Start("dev",
            ["dev", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("data")],
            new Dictionary<string, string> { ["SHOAL_CONFIG"] = dir.Combine("config.json") },
            ownProcessGroup: true);
        try
        {
            await Eventually.GetAsync(() => Task.FromResult(dev.Output), o => o.Contains("Ctrl-C stops everything", StringComparison.Ordinal) || dev.HasExited, TimeSpan.FromSeconds(90), "dev ready");
            Assert.False(dev.HasExited, dev.Output);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}") }.WithKey(File.ReadAllText(dir.Combine("data", "server", "operator.key")).Trim());
            var status = await Eventually.GetAsync(() => http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto),
                s => s!.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(30), "demo ready");
            var replicaIds = status!.Replicas.Select(r => r.Id).ToArray();
            Assert.Equal(2, replicaIds.Count(ReplicaProcesses.Find().ContainsKey));
            var before = dev.Output.Length;

            dev.SignalGroup(signal);

            Assert.Equal(0, await dev.WaitForExitAsync(TimeSpan.FromSeconds(60)));
            var stopping = dev.Output[before..];
            output.WriteLine($"--- after signal {signal}:\n{stopping}");
            foreach (var bad in (string[])["warn:", "fail:", "crit:", "error", "Lost the connection", "restarting", "exited with code"])
            {
                Assert.DoesNotContain(bad, stopping, StringComparison.OrdinalIgnoreCase);
            }
            await Eventually.GetAsync(() => Task.FromResult(replicaIds.Count(ReplicaProcesses.Find().ContainsKey)), n => n == 0, TimeSpan.FromSeconds(10), "replica processes gone");
            Assert.Empty(dev.GroupMembers());
        }
        catch
        {
            output.WriteLine(dev.Output);
            throw;
        }
        finally
        {
            await dev.DisposeAsync();
        }
    }
}
