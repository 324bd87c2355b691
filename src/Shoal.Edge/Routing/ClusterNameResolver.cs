
namespace Shoal.Edge.Routing;

/// <summary>
/// Finds the cluster a request is for: by path prefix <c>/c/{cluster}/…</c> (the prefix is
/// stripped before forwarding) or by Host <c>{cluster}.{domain}</c>.
/// </summary>
public static class ClusterNameResolver
{
    public static bool TryResolve(HttpRequest request, string domain, out string cluster, out PathString forwardPath)
    {
        var path = request.Path;
        if (path.StartsWithSegments("/c", out var rest) && rest.HasValue)
        {
            var value = rest.Value!;
            var end = value.IndexOf('/', 1);
            cluster = end < 0 ? value[1..] : value[1..end];
            forwardPath = end < 0 ? new PathString("/") : new PathString(value[end..]);
            return cluster.Length > 0;
        }

        var host = request.Host.Host;
        var suffix = "." + domain;
        if (host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
        {
            cluster = host[..^suffix.Length].ToLowerInvariant();
            forwardPath = path.HasValue ? path : new PathString("/");
            return !cluster.Contains('.', StringComparison.Ordinal);
        }

        cluster = "";
        forwardPath = path;
        return false;
    }
}
