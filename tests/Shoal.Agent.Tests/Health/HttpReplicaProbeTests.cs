using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Health;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Health;

public sealed class HttpReplicaProbeTests
{
    [Fact]
    public async Task A_replica_that_accepts_the_connection_and_never_answers_fails_its_probe_at_the_timeout()
    {
        // Like a SIGSTOPped replica: the kernel still accepts connections into its backlog, nothing reads them.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var time = new FakeTimeProvider();
        using var http = HttpReplicaProbe.CreateClient();
        var probe = new HttpReplicaProbe(http, time);

        var result = probe.ProbeAsync(port, new HealthCheckSpec { TimeoutMs = 2000 }, CancellationToken.None);
        await Task.Delay(200);
        Assert.False(result.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1999));
        await Task.Delay(100);
        Assert.False(result.IsCompleted);

        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(await result.WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
