using System.Net.Http.Headers;
using System.Net.Http.Json;
using Shoal.Contracts;

namespace Shoal.Testing;

/// <summary>API keys for tests that run <c>shoal server</c> as a process: its bootstrap operator key and endpoint keys.</summary>
public static class ApiKeys
{
    /// <summary>The operator key a server wrote to <c>{dataDir}/operator.key</c> on its first start (waits for it).</summary>
    public static async Task<string> ReadOperatorKeyAsync(string serverDataDir, TimeSpan? timeout = null)
    {
        var path = Path.Combine(serverDataDir, "operator.key");
        return await Eventually.GetAsync(() => Task.FromResult(File.Exists(path) ? File.ReadAllText(path).Trim() : ""),
            key => key.Length > 0, timeout ?? TimeSpan.FromSeconds(30), "the server's operator key");
    }

    /// <summary>Makes <paramref name="http"/> send <paramref name="key"/> as <c>Authorization: Bearer</c>; returns it.</summary>
    public static HttpClient WithKey(this HttpClient http, string? key)
    {
        http.DefaultRequestHeaders.Authorization = key is null ? null : new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    /// <summary>Creates a key through <paramref name="api"/> (which carries a key allowed to); returns the key.</summary>
    public static async Task<string> CreateAsync(HttpClient api, string role = ApiKeyRoles.Endpoint, string? project = "default", string name = "test")
    {
        var response = await api.PostAsJsonAsync("/v1/keys",
            new CreateApiKeyRequest { Name = name, Role = role, Project = role == ApiKeyRoles.Operator ? null : project },
            ShoalJsonContext.Default.CreateApiKeyRequest);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"create key: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!.Key;
    }
}
