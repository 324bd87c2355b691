namespace Shoal.Contracts;

/// <summary>Turns a configured http(s) base URL into the WebSocket URL of one of Shoal's endpoints.</summary>
public static class WebSocketAddress
{
    /// <summary>
    /// <c>http://h:p/base</c> + <c>/path</c> → <c>ws://h:p/base/path</c>; https → wss; ws and wss kept.
    /// Null when <paramref name="baseUrl"/> is not an absolute http(s) or ws(s) URL.
    /// </summary>
    public static Uri? Create(string baseUrl, string path)
    {
        if (!Uri.TryCreate(baseUrl.Trim(), UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host)) return null;
        var scheme = uri.Scheme switch
        {
            "http" or "ws" => "ws",
            "https" or "wss" => "wss",
            _ => null,
        };
        if (scheme is null) return null;
        return new UriBuilder(uri)
        {
            Scheme = scheme,
            Port = uri.IsDefaultPort ? -1 : uri.Port,
            Path = uri.AbsolutePath.TrimEnd('/') + path,
            Query = "",
            Fragment = "",
        }.Uri;
    }
}
