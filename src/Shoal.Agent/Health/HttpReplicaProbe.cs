using System.Globalization;
using System.Text.Json;
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

    /// <summary>Most model ids taken from a replica's list (as many as a cluster may declare).</summary>
    public const int MaxModels = 64;

    public async Task<string[]?> ListModelsAsync(int port, TimeSpan timeout, CancellationToken ct)
    {
        using var timeoutCts = new CancellationTokenSource(timeout, timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeoutCts.Token);
        try
        {
            using var response = await http.GetAsync(Url(port, "/v1/models"), HttpCompletionOption.ResponseHeadersRead, linked.Token);
            if (!response.IsSuccessStatusCode) return null;
            await using var body = await response.Content.ReadAsStreamAsync(linked.Token);
            using var doc = await JsonDocument.ParseAsync(body, cancellationToken: linked.Token);
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array) return null;
            var ids = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var model in data.EnumerateArray())
            {
                if (model.ValueKind == JsonValueKind.Object && model.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String
                    && id.GetString() is { Length: > 0 and <= 256 } name && !name.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
                {
                    ids.Add(name);
                    if (ids.Count == MaxModels) break;
                }
            }
            return ids.Count == 0 ? null : [.. ids];
        }
        catch (Exception e) when (e is HttpRequestException or JsonException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            return null;
        }
    }

    private static Uri Url(int port, string path) =>
        new("http://127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture) + path);
}
