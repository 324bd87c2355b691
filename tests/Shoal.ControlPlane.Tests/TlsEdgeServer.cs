using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>A test server whose in-process edge serves HTTPS with a fresh self-signed certificate (PFX in a temp directory).</summary>
internal sealed class TlsEdgeServer : IAsyncDisposable
{
    private readonly TempDirectory _dir;
    private readonly X509Certificate2 _certificate;

    private TlsEdgeServer(TempDirectory dir, X509Certificate2 certificate, TestServer server)
    {
        _dir = dir;
        _certificate = certificate;
        Server = server;
    }

    public TestServer Server { get; }

    /// <summary>True for the edge's certificate: the validation a client of this edge uses.</summary>
    public bool IsEdgeCertificate(X509Certificate? certificate) => certificate?.GetCertHashString() == _certificate.GetCertHashString();

    public static async Task<TlsEdgeServer> StartAsync()
    {
        var dir = new TempDirectory("shoal-tls");
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var pfx = dir.Combine("edge.pfx");
        await File.WriteAllBytesAsync(pfx, certificate.Export(X509ContentType.Pkcs12, "pw"));
        var server = await TestServer.StartAsync(configure: o =>
        {
            o.EdgeTlsPfx = pfx;
            o.EdgeTlsPassword = "pw";
        });
        return new TlsEdgeServer(dir, certificate, server);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _certificate.Dispose();
        _dir.Dispose();
    }
}
