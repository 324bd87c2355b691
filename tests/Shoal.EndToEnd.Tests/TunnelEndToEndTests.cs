using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// Issue 3, must-show 1: the agent and its replicas live in a network namespace the test creates,
/// whose only way out is a veth link to the host, where the server and edge listen. The edge
/// cannot reach the replicas (they listen on the namespace's own loopback) except through the
/// tunnels the agent opens to it, and requests through the endpoint succeed.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class TunnelEndToEndTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Requests_reach_replicas_in_a_closed_network_namespace_only_through_tunnels()
    {
        using var ns = NetworkNamespace.Create();
        using var dir = new TempDirectory("shoal-tun");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var api = $"http://{ns.HostAddress}:{apiPort}";
        var processes = new List<ShoalProcess>();
        using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(30) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://{ns.HostAddress}:{edgePort}"), Timeout = TimeSpan.FromSeconds(30) };
        try
        {
            processes.Add(ShoalProcess.Start("server",
                ["server", "--listen", $"{ns.HostAddress}:{apiPort}", "--edge-listen", $"{ns.HostAddress}:{edgePort}", "--data-dir", dir.Combine("server"), "--log-level", "Warning", "--allow-simulated-gpus"]));
            await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"), edge);
            var token = await DeployEndToEndTests.CreateTokenAsync(http, 1);
            var agent = ShoalProcess.Start("agent-in-ns",
            [
                "agent", "--server", api, "--token", token, "--name", "hidden", "--simulate-gpus", "rtx-4090:2",
                "--data-dir", dir.Combine("agent"), "--runtime", "process", "--enable-process-runtime", "--log-level", "Warning",
                // The edge is across the namespace's veth, over plain http: allowed explicitly.
                "--allow-plain-tunnels",
            ], netns: ns.Name);
            processes.Add(agent);
            await Eventually.GetAsync(() => DeployEndToEndTests.NodesAsync(http), n => n.Any(x => x.State == NodeState.Ready), TimeSpan.FromSeconds(30), "node ready");

            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 2,
                QueueTimeoutSeconds = 1,
                Env = new() { ["SIM_DECODE_MS"] = "1" },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var status = await DeployEndToEndTests.WaitForReadyAsync(http, 2);

            // The replicas run inside the namespace: on the host, nothing answers on their ports.
            var inside = ns.Pids();
            var replicaPids = ReplicaProcesses.Find().Where(p => status.Replicas.Any(r => r.Id == p.Key)).SelectMany(p => p.Value).ToList();
            Assert.Equal(2, replicaPids.Count);
            Assert.All(replicaPids, pid => Assert.Contains(pid, inside));
            foreach (var replica in status.Replicas)
            {
                Assert.NotNull(replica.Address);
                var port = int.Parse(replica.Address![(replica.Address!.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                Assert.False(await CanConnectAsync(IPAddress.Loopback, port), $"replica port {port} must not be reachable from the host");
            }

            // Yet requests through the endpoint succeed, over the tunnels, on both replicas.
            var served = await DeployEndToEndTests.SendChatsAsync(edge, 40);
            Assert.Equal(2, served.Count);

            // A streamed completion arrives whole, as server-sent events.
            using var content = new StringContent("{\"model\":\"shoal-sim\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":8}", Encoding.UTF8, "application/json");
            using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var body = await response.Content.ReadAsStringAsync();
            Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);

            // The agent dies with its tunnels: the edge stops routing to it at once (no heartbeat needed).
            await agent.KillAsync();
            var after = await edge.PostAsync("/c/demo/v1/chat/completions", new StringContent("{\"model\":\"shoal-sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, after.StatusCode);
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    private static async Task<bool> CanConnectAsync(IPAddress address, int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await socket.ConnectAsync(new IPEndPoint(address, port), timeout.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }
}
