using Microsoft.Extensions.Primitives;
using Shoal.Contracts;
using Shoal.Core.Access;
using Shoal.Core.Security;

namespace Shoal.Edge.Access;

/// <summary>What the edge decided about a request's key.</summary>
public enum AccessDecision
{
    /// <summary>A valid key of the cluster's project (the key is removed before forwarding).</summary>
    Allowed,
    /// <summary>The cluster is public: no key needed (an Authorization header goes through untouched).</summary>
    Public,
    /// <summary>No key, an unknown one, or an expired one: 401.</summary>
    Unauthenticated,
    /// <summary>A valid key of another project: answered as an unknown cluster (404), so names do not leak.</summary>
    OtherProject,
}

/// <summary>
/// Checks endpoint keys locally, from the hashes the control plane pushes: no call to the server on
/// the request path, and a revoked key disappears from every edge with the next push.
/// </summary>
public sealed class EndpointAccess(IEndpointKeySource keys, TimeProvider time)
{
    /// <summary>Most header values whose hash is remembered; the memory is emptied when it is full.</summary>
    public const int HashCacheSize = 10_000;

    // Authorization header value → hash of the key in it. A client sends the same header on every
    // request: hashing it once saves a SHA-256, a hex string and three allocations per request.
    // Grants are still looked up on every request, so a revocation takes effect at once; keys that
    // match nothing fill the memory at most to its size, then it starts again.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _hashes = new(StringComparer.Ordinal);

    public AccessDecision Check(ClusterRoute route, StringValues authorization) => Check(route, authorization, out _);

    /// <summary>
    /// Checks the request's key for <paramref name="route"/>; <paramref name="grant"/> is the valid
    /// key's grant (also for a public cluster called with a key of its project, so its limits and
    /// ledger rows apply), null otherwise.
    /// </summary>
    public AccessDecision Check(ClusterRoute route, StringValues authorization, out EndpointKeyGrant? grant)
    {
        grant = Find(authorization);
        if (route.Public)
        {
            if (grant is not null && grant.Project != route.Project) grant = null;
            return AccessDecision.Public;
        }
        if (grant is null) return AccessDecision.Unauthenticated;
        return grant.Project == route.Project ? AccessDecision.Allowed : AccessDecision.OtherProject;
    }

    /// <summary>The grant of a valid (known, unexpired) bearer key in <paramref name="authorization"/>; null when there is none.</summary>
    public EndpointKeyGrant? Find(StringValues authorization)
    {
        var header = authorization.Count == 1 ? authorization[0] : null;
        if (header is null || header.Length <= 7 || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return null;
        if (!_hashes.TryGetValue(header, out var hash))
        {
            hash = Secrets.Hash(header.AsSpan(7).Trim().ToString());
            if (_hashes.Count >= HashCacheSize) _hashes.Clear();
            _hashes[header] = hash;
        }
        var grant = keys.EndpointKeys.GetValueOrDefault(hash);
        if (grant is null || (grant.ExpiresAt is { } expires && expires <= time.GetUtcNow())) return null;
        return grant;
    }
}
