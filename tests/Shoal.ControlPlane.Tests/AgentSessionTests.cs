using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.ControlPlane.Agents;

namespace Shoal.ControlPlane.Tests;

public sealed class AgentSessionTests
{
    [Fact]
    public async Task Messages_queued_before_the_welcome_go_after_it_so_an_agent_always_hears_welcome_first()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var accepted = await listener.AcceptTcpClientAsync();
        using var serverSocket = WebSocket.CreateFromStream(accepted.GetStream(), new WebSocketCreationOptions { IsServer = true });
        using var agentSocket = WebSocket.CreateFromStream(client.GetStream(), new WebSocketCreationOptions { IsServer = false });
        var session = new AgentSession(serverSocket, "n-1");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var writer = session.RunWriterAsync(stop.Token);

        // A broadcast reaches the session between its registration and its welcome (an edge connecting, a push).
        session.Enqueue(new EdgesMessage { Edges = ["http://127.0.0.1:1"] });
        session.Enqueue(new AssignmentsMessage { Revision = 1, Replicas = [] });
        session.Welcome(new WelcomeMessage { NodeId = "n-1" });
        session.Enqueue(new AssignmentsMessage { Revision = 2, Replicas = [] });

        var received = new List<AgentMessage>();
        var buffer = new byte[64 * 1024];
        while (received.Count < 4)
        {
            var result = await agentSocket.ReceiveAsync(buffer, stop.Token);
            received.Add(JsonSerializer.Deserialize(buffer.AsSpan(0, result.Count), ShoalJsonContext.Default.AgentMessage)!);
        }
        Assert.IsType<WelcomeMessage>(received[0]);
        Assert.IsType<EdgesMessage>(received[1]);
        Assert.Equal([1L, 2L], received.Skip(2).Cast<AssignmentsMessage>().Select(a => a.Revision));
        session.Complete();
        await writer;
    }
}
