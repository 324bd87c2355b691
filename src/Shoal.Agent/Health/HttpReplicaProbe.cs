using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Agent.Health;

/// <summary>Probes replicas over HTTP on 127.0.0.1.</summary>
public sealed class HttpReplicaProbe(HttpClient http, TimeProvider timeProvider) : IReplicaProbe
{
    /// <summary>A client for loopback probes: no proxy, short connect timeout.</summary>
    public static HttpClient CreateClient() => new(new SocketsHttpHandler
    {
        UseProxy = false,
        ConnectTimeout = TimeSpan.FromSeconds(2),
        PooledConnectionLifetime = TimeSpan.FromMinutes(1),
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(20),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    public async Task<bool> ProbeAsync(int port, HealthCheckSpec spec, CancellationToken ct)
    {
        var path = string.IsNullOrEmpty(spec.Path) ? "/" : spec.Path[0] == '/' ? spec.Path : "/" + spec.Path;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(1, spec.TimeoutMs)), timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        try
        {
            using var response = await http.GetAsync(Url(port, path), HttpCompletionOption.ResponseHeadersRead, linked.Token);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
    }

    public async Task<ReplicaLoad?> ScrapeLoadAsync(int port, TimeSpan timeout, CancellationToken ct)
    {
        using var timeoutCts = new CancellationTokenSource(timeout, timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeoutCts.Token);
        try
        {
            using var response = await http.GetAsync(Url(port, "/metrics"), HttpCompletionOption.ResponseHeadersRead, linked.Token);
            if (!response.IsSuccessStatusCode)
            {
                return null;
            }
            var text = await response.Content.ReadAsStringAsync(linked.Token);
            return PrometheusText.ReadLoad(text);
        }
        catch (HttpRequestException)
        {
            return null;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return null;
        }
    }

    private static Uri Url(int port, string path) =>
        new("http://127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture) + path);
}
