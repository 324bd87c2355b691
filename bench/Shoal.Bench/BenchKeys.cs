using Microsoft.Extensions.DependencyInjection;
using Shoal.ControlPlane;
using Shoal.Server;

namespace Shoal.Bench;

/// <summary>API clients for benchmarks that host a server in process.</summary>
internal static class BenchKeys
{
    /// <summary>A client of <paramref name="server"/>'s API sending its bootstrap operator key.</summary>
    public static HttpClient OperatorClient(ShoalServer server)
    {
        var dataDir = server.Services.GetRequiredService<ServerOptions>().DataDir;
        var key = File.ReadAllText(Path.Combine(dataDir, "operator.key")).Trim();
        var http = new HttpClient { BaseAddress = server.ApiAddress };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        return http;
    }
}
