namespace Shoal.Hosting;

/// <summary>Parses <c>host:port</c> listen addresses into URLs Kestrel understands.</summary>
public static class ListenAddress
{
    public static bool TryParse(string value, out string url)
    {
        url = "";
        if (string.IsNullOrWhiteSpace(value)) return false;
        var v = value.Trim();
        if (v.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) v = v[7..];
        var colon = v.LastIndexOf(':');
        if (colon <= 0 || colon == v.Length - 1) return false;
        if (!int.TryParse(v[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port > 65535) return false;
        var host = v[..colon];
        url = $"http://{host}:{port}";
        return Uri.TryCreate(url, UriKind.Absolute, out _);
    }
}
