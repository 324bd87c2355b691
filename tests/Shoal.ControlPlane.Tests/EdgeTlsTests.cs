using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using Shoal.Contracts;
using Shoal.Server;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary><c>shoal server</c>'s in-process edge serves HTTPS with the certificate from the server options.</summary>
public sealed class EdgeTlsTests
{
    [Fact]
    public async Task The_in_process_edge_serves_https_and_cluster_endpoints_say_so()
    {
        await using var tls = await TlsEdgeServer.StartAsync();
        var server = tls.Server;
        var edge = server.Server.EdgeAddress!;
        Assert.Equal("https", edge.Scheme);

        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) => tls.IsEdgeCertificate(cert),
            },
        };
        using var client = new HttpClient(handler) { BaseAddress = edge };
        using var health = await client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        var created = await server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090" },
            ShoalJsonContext.Default.CreateClusterRequest);
        var dto = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!;
        Assert.StartsWith("https://", dto.Endpoint, StringComparison.Ordinal);
    }

    [Fact]
    public void A_certificate_without_its_key_is_refused_before_starting()
    {
        var errors = ShoalServer.Validate(new ServerOptions { EdgeTlsCertificate = "/nonexistent/cert.pem" });
        Assert.Contains(errors, e => e.Contains("key", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("does not exist", StringComparison.Ordinal));
    }
}
