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
}
