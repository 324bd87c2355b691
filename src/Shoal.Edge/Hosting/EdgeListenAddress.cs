using System.Globalization;
using System.Net;

namespace Shoal.Edge;

/// <summary>Parses the edge's <c>host:port</c> listen address; host is an IP address, <c>localhost</c> or <c>*</c> (every address).</summary>
public static class EdgeListenAddress
{
    /// <summary>Parses <paramref name="value"/>; <paramref name="endpoint"/> is null for <c>localhost</c> with a fixed port (both loopbacks).</summary>
    public static bool TryParse(string? value, out (IPAddress? Address, int Port) endpoint)
    {
        endpoint = default;
        if (string.IsNullOrWhiteSpace(value)) return false;
        var v = value.Trim();
        if (v.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) v = v[7..];
        else if (v.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) v = v[8..];
        v = v.TrimEnd('/');
        var colon = v.LastIndexOf(':');
        if (colon <= 0 || colon == v.Length - 1) return false;
        if (!int.TryParse(v.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535) return false;
        var host = v[..colon];
        if (host.Length > 2 && host[0] == '[' && host[^1] == ']') host = host[1..^1];
        IPAddress? address;
        if (host is "*" or "+" or "0.0.0.0") address = IPAddress.Any;
        else if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) address = port == 0 ? IPAddress.Loopback : null;
        else if (!IPAddress.TryParse(host, out address)) return false;
        endpoint = (address, port);
        return true;
    }
}
