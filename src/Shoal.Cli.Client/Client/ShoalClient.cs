using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Shoal.Contracts;

namespace Shoal.Cli.Client;

/// <summary>Typed client for the Shoal REST API (<c>/v1</c>).</summary>
/// <remarks>
/// Non-success answers throw <see cref="ShoalApiException"/>; no answer at all throws
/// <see cref="ShoalServerUnreachableException"/>, so commands can tell the user which one happened.
/// </remarks>
public sealed class ShoalClient : IDisposable
{
    /// <summary>How long one request may take before the server counts as unreachable.</summary>
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    /// <summary>A client for the server at <paramref name="address"/>, e.g. <c>http://127.0.0.1:7400</c>.</summary>
    public ShoalClient(Uri address, HttpMessageHandler? handler = null)
        : this(address, null, handler)
    {
    }

    /// <summary>A client that sends <paramref name="apiKey"/> (<c>Authorization: Bearer</c>) with every call.</summary>
    public ShoalClient(Uri address, string? apiKey, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        _http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: true);
        _http.BaseAddress = WithTrailingSlash(address);
        if (!string.IsNullOrEmpty(apiKey)) _http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        _http.Timeout = DefaultRequestTimeout;
        _ownsHttp = true;
    }

    /// <summary>A client over an existing <see cref="HttpClient"/> (its BaseAddress must be set); not disposed by this client.</summary>
    public ShoalClient(HttpClient http)
    {
        ArgumentNullException.ThrowIfNull(http);
        if (http.BaseAddress is null)
        {
            throw new ArgumentException("the HttpClient needs a BaseAddress", nameof(http));
        }

        _http = http;
        _ownsHttp = false;
    }

    public Uri Address => _http.BaseAddress!;

    public Task<ClusterDto> CreateClusterAsync(CreateClusterRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/clusters", request, ShoalJsonContext.Default.CreateClusterRequest, ShoalJsonContext.Default.ClusterDto, ct);

    public Task<ClusterDto[]> ListClustersAsync(CancellationToken ct = default) =>
        GetAsync("v1/clusters", ShoalJsonContext.Default.ClusterDtoArray, ct);

    public Task<ClusterDto> GetClusterAsync(string name, CancellationToken ct = default) =>
        GetAsync($"v1/clusters/{Escape(name)}", ShoalJsonContext.Default.ClusterDto, ct);

    public Task<ClusterDto> UpdateClusterAsync(string name, UpdateClusterRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Patch, $"v1/clusters/{Escape(name)}", request, ShoalJsonContext.Default.UpdateClusterRequest, ShoalJsonContext.Default.ClusterDto, ct);

    public async Task DeleteClusterAsync(string name, CancellationToken ct = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, $"v1/clusters/{Escape(name)}");
        using var response = await SendCoreAsync(request, ct);
    }

    public Task<ClusterStatusDto> GetClusterStatusAsync(string name, CancellationToken ct = default) =>
        GetAsync($"v1/clusters/{Escape(name)}/status", ShoalJsonContext.Default.ClusterStatusDto, ct);

    /// <summary>The last <paramref name="limit"/> events of a cluster (the server's default when null), oldest first.</summary>
    public Task<ClusterEventDto[]> ListEventsAsync(string name, int? limit = null, CancellationToken ct = default) =>
        GetAsync($"v1/clusters/{Escape(name)}/events" + (limit is { } n ? "?limit=" + n.ToString(System.Globalization.CultureInfo.InvariantCulture) : ""),
            ShoalJsonContext.Default.ClusterEventDtoArray, ct);

    /// <summary>
    /// Streams a cluster's output (one replica's, or all of them, lines prefixed with the replica id)
    /// to <paramref name="write"/> until the server ends it or <paramref name="ct"/> is cancelled.
    /// </summary>
    public async Task StreamLogsAsync(string name, string? replica, bool follow, int? tail, Func<string, Task> write, CancellationToken ct = default)
    {
        var query = new List<string>();
        if (replica is not null)
        {
            query.Add("replica=" + Escape(replica));
        }
        if (follow)
        {
            query.Add("follow=true");
        }
        if (tail is { } t)
        {
            query.Add("tail=" + t.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        var path = $"v1/clusters/{Escape(name)}/logs" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await SendCoreAsync(request, ct);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        using var reader = new StreamReader(body, System.Text.Encoding.UTF8);
        var buffer = new char[8192];
        int n;
        while ((n = await reader.ReadAsync(buffer, ct)) > 0)
        {
            await write(new string(buffer, 0, n));
        }
    }

    public Task<NodeDto[]> ListNodesAsync(CancellationToken ct = default) =>
        GetAsync("v1/nodes", ShoalJsonContext.Default.NodeDtoArray, ct);

    /// <summary>A node by id, or by name when the name is unique.</summary>
    public Task<NodeDto> GetNodeAsync(string idOrName, CancellationToken ct = default) =>
        GetAsync($"v1/nodes/{Escape(idOrName)}", ShoalJsonContext.Default.NodeDto, ct);

    /// <summary><c>POST /v1/nodes/{id}/{action}</c> with <paramref name="action"/> one of cordon, uncordon, drain.</summary>
    public async Task<NodeDto> SetNodeSchedulingAsync(string idOrName, string action, CancellationToken ct = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1/nodes/{Escape(idOrName)}/{Escape(action)}");
        using var response = await SendCoreAsync(request, ct);
        return await ReadAsync(response, ShoalJsonContext.Default.NodeDto, ct);
    }

    public Task<TokenCreatedDto> CreateTokenAsync(CreateTokenRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/tokens", request, ShoalJsonContext.Default.CreateTokenRequest, ShoalJsonContext.Default.TokenCreatedDto, ct);

    public Task<TokenDto[]> ListTokensAsync(CancellationToken ct = default) =>
        GetAsync("v1/tokens", ShoalJsonContext.Default.TokenDtoArray, ct);

    public Task RevokeTokenAsync(string id, CancellationToken ct = default) => DeleteAsync($"v1/tokens/{Escape(id)}", ct);

    public Task RemoveNodeAsync(string idOrName, CancellationToken ct = default) => DeleteAsync($"v1/nodes/{Escape(idOrName)}", ct);

    public Task<ApiKeyCreatedDto> CreateApiKeyAsync(CreateApiKeyRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/keys", request, ShoalJsonContext.Default.CreateApiKeyRequest, ShoalJsonContext.Default.ApiKeyCreatedDto, ct);

    public Task<ApiKeyDto[]> ListApiKeysAsync(CancellationToken ct = default) =>
        GetAsync("v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray, ct);

    public Task RevokeApiKeyAsync(string id, CancellationToken ct = default) => DeleteAsync($"v1/keys/{Escape(id)}", ct);

    public Task<ApiKeyDto> UpdateApiKeyAsync(string id, UpdateGatewaySettingsRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Patch, $"v1/keys/{Escape(id)}", request, ShoalJsonContext.Default.UpdateGatewaySettingsRequest, ShoalJsonContext.Default.ApiKeyDto, ct);

    public Task<ProjectDto> UpdateProjectAsync(string name, UpdateGatewaySettingsRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Patch, $"v1/projects/{Escape(name)}", request, ShoalJsonContext.Default.UpdateGatewaySettingsRequest, ShoalJsonContext.Default.ProjectDto, ct);

    public Task<ProjectDto> CreateProjectAsync(CreateProjectRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/projects", request, ShoalJsonContext.Default.CreateProjectRequest, ShoalJsonContext.Default.ProjectDto, ct);

    public Task<ProjectDto[]> ListProjectsAsync(CancellationToken ct = default) =>
        GetAsync("v1/projects", ShoalJsonContext.Default.ProjectDtoArray, ct);

    public Task<WhoAmIDto> WhoAmIAsync(CancellationToken ct = default) =>
        GetAsync("v1/whoami", ShoalJsonContext.Default.WhoAmIDto, ct);

    private async Task DeleteAsync(string path, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, path);
        using var response = await SendCoreAsync(request, ct);
    }

    /// <summary><c>GET /v1/usage</c>: usage grouped <paramref name="by"/> node, cluster, key or project since <paramref name="since"/> (24h, or a time).</summary>
    public Task<UsageReportDto> GetUsageAsync(string by, string since, string? until = null, CancellationToken ct = default) =>
        GetAsync($"v1/usage?by={Uri.EscapeDataString(by)}&since={Uri.EscapeDataString(since)}" + (until is null ? "" : "&until=" + Uri.EscapeDataString(until)),
            ShoalJsonContext.Default.UsageReportDto, ct);

    public Task<GpuTypeDto[]> ListGpuTypesAsync(CancellationToken ct = default) =>
        GetAsync("v1/gpu-types", ShoalJsonContext.Default.GpuTypeDtoArray, ct);

    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    private async Task<TResponse> GetAsync<TResponse>(string path, JsonTypeInfo<TResponse> responseType, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await SendCoreAsync(request, ct);
        return await ReadAsync(response, responseType, ct);
    }

    private async Task<TResponse> SendAsync<TRequest, TResponse>(
        HttpMethod method, string path, TRequest body, JsonTypeInfo<TRequest> requestType, JsonTypeInfo<TResponse> responseType, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path) { Content = JsonContent.Create(body, requestType) };
        using var response = await SendCoreAsync(request, ct);
        return await ReadAsync(response, responseType, ct);
    }

    private async Task<HttpResponseMessage> SendCoreAsync(HttpRequestMessage request, CancellationToken ct)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException ex) when (IsUnreachable(ex))
        {
            throw new ShoalServerUnreachableException(Address, ex);
        }
        catch (TaskCanceledException ex) when (!ct.IsCancellationRequested)
        {
            // HttpClient.Timeout, not the caller's token.
            throw new ShoalServerUnreachableException(Address, ex);
        }

        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            throw await ToApiExceptionAsync(response, ct);
        }
    }

    private static bool IsUnreachable(HttpRequestException ex) =>
        ex.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError
        || ex.InnerException is SocketException;

    private static async Task<ShoalApiException> ToApiExceptionAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var status = response.StatusCode;
        string text;
        try
        {
            text = await response.Content.ReadAsStringAsync(ct);
        }
        catch (HttpRequestException)
        {
            text = "";
        }

        if (!string.IsNullOrWhiteSpace(text))
        {
            try
            {
                var error = JsonSerializer.Deserialize(text, ShoalJsonContext.Default.ErrorResponse);
                if (error?.Error is { Code: not null, Message: not null } body)
                {
                    return new ShoalApiException(status, body.Code, body.Message);
                }
            }
            catch (JsonException)
            {
                // Not the API's error body: probably not a Shoal server, or a proxy in between.
            }
        }

        var snippet = text.Trim();
        if (snippet.Length > 200)
        {
            snippet = snippet[..200] + "…";
        }

        var message = $"the server answered {(int)status} {response.ReasonPhrase ?? status.ToString()}"
            + (snippet.Length > 0 ? $" without a Shoal error body: {snippet}" : " with an empty body")
            + $" ({response.RequestMessage?.Method} {response.RequestMessage?.RequestUri?.AbsolutePath}; is the address a Shoal server?)";
        return new ShoalApiException(status, $"http_{(int)status}", message);
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, JsonTypeInfo<T> type, CancellationToken ct)
    {
        try
        {
            var value = await response.Content.ReadFromJsonAsync(type, ct);
            return value ?? throw new ShoalApiException(response.StatusCode, "invalid_response", $"the server answered {(int)response.StatusCode} with an empty body where JSON was expected");
        }
        catch (JsonException ex)
        {
            throw new ShoalApiException(response.StatusCode, "invalid_response", $"the server's answer is not the expected JSON ({ex.Message}); is the address a Shoal server?");
        }
    }

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static Uri WithTrailingSlash(Uri address) =>
        address.AbsoluteUri.EndsWith('/') ? address : new Uri(address.AbsoluteUri + "/");
}
