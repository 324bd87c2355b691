using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Shoal.Edge.Tests;

/// <summary>The edge terminates TLS with a configured certificate (PEM pair or PFX).</summary>
public sealed class TlsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("shoal-edge-tls-");
    private readonly X509Certificate2 _certificate;

    public TlsTests()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(Path.Combine(_dir.FullName, "cert.pem"), _certificate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_dir.FullName, "key.pem"), key.ExportPkcs8PrivateKeyPem());
        File.WriteAllBytes(Path.Combine(_dir.FullName, "edge.pfx"), _certificate.Export(X509ContentType.Pkcs12, "secret"));
    }

    public void Dispose()
    {
        _certificate.Dispose();
        _dir.Delete(recursive: true);
    }

    [Theory]
    [InlineData("pem")]
    [InlineData("pfx")]
    public async Task Requests_over_https_reach_the_replica(string kind)
    {
        var options = kind == "pem"
            ? new EdgeOptions { TlsCertificatePath = Path.Combine(_dir.FullName, "cert.pem"), TlsKeyPath = Path.Combine(_dir.FullName, "key.pem") }
            : new EdgeOptions { TlsPfxPath = Path.Combine(_dir.FullName, "edge.pfx"), TlsPassword = "secret" };
        await using var edge = await TestEdge.StartAsync(options);
        await using var replica = await TestReplica.EchoAsync("secure");
        edge.SetCluster("demo", [replica.Route]);
        Assert.Equal("https", edge.Address.Scheme);

        X509Certificate? seen = null;
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, _) =>
                {
                    seen = cert;
                    return cert is not null && cert.GetCertHashString() == _certificate.GetCertHashString();
                },
            },
        };
        using var client = new HttpClient(handler) { BaseAddress = edge.Address };
        using var response = await client.PostAsync("/c/demo/v1/completions", new StringContent("over tls"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("secure:/v1/completions:over tls", await response.Content.ReadAsStringAsync());
        Assert.NotNull(seen);
    }

    [Fact]
    public void Incomplete_tls_settings_are_rejected_with_clear_messages()
    {
        var errors = new EdgeOptions { TlsCertificatePath = Path.Combine(_dir.FullName, "cert.pem") }.Validate();
        Assert.Contains(errors, e => e.Contains("key file", StringComparison.Ordinal));
        errors = new EdgeOptions { TlsPfxPath = Path.Combine(_dir.FullName, "missing.pfx") }.Validate();
        Assert.Contains(errors, e => e.Contains("does not exist", StringComparison.Ordinal));
        errors = new EdgeOptions { TlsPfxPath = Path.Combine(_dir.FullName, "edge.pfx"), TlsCertificatePath = Path.Combine(_dir.FullName, "cert.pem"), TlsKeyPath = Path.Combine(_dir.FullName, "key.pem") }.Validate();
        Assert.Contains(errors, e => e.Contains("not both", StringComparison.Ordinal));
    }
}
