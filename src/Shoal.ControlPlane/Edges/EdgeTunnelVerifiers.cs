using Shoal.ControlPlane.State;
using Shoal.Core.Security;
using Shoal.Core.Tunnels;

namespace Shoal.ControlPlane.Edges;

/// <summary>
/// What the in-process edge checks tunnels against: per node, the hash of the credential derived
/// for this edge's URL (<see cref="TunnelCredential"/>), recomputed only when the nodes or the URL change.
/// </summary>
public sealed class EdgeTunnelVerifiers(ControlPlaneState state, EdgeDirectory directory) : INodeCredentialSource
{
    private static readonly IReadOnlyDictionary<string, string> s_none = new Dictionary<string, string>(StringComparer.Ordinal);

    private volatile Snapshot? _current;

    public IReadOnlyDictionary<string, string> NodeCredentials
    {
        get
        {
            var hashes = state.NodeCredentials;
            var url = directory.Local;
            var current = _current;
            if (current is not null && ReferenceEquals(current.Hashes, hashes) && current.Url == url) return current.Verifiers;
            var next = new Snapshot(hashes, url, url is null ? s_none : TunnelCredential.Verifiers(hashes, url));
            _current = next;
            return next.Verifiers;
        }
    }

    private sealed record Snapshot(IReadOnlyDictionary<string, string> Hashes, string? Url, IReadOnlyDictionary<string, string> Verifiers);
}
