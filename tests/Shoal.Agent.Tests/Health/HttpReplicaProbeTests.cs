using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Health;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Health;

public sealed class HttpReplicaProbeTests
{
    [Theory]
    [InlineData("""{"object":"list","data":[{"id":"b-model","object":"model"},{"id":"a-model","object":"model"},{"id":"a-model"},{"id":"has space"},{"id":3}]}""", "a-model,b-model")]
    [InlineData("""{"object":"list","data":[]}""", null)]
    [InlineData("""not json""", null)]
    [InlineData("""{"data":{"id":"x"}}""", null)]
    public async Task Lists_the_model_ids_a_replica_serves(string answer, string? expected)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.MapGet("/v1/models", () => Results.Text(answer, "application/json"));
        await app.StartAsync();
        var port = new Uri(app.Urls.First()).Port;
        using var http = HttpReplicaProbe.CreateClient();
        var models = await new HttpReplicaProbe(http, TimeProvider.System).ListModelsAsync(port, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal(expected, models is null ? null : string.Join(',', models));
    }

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
