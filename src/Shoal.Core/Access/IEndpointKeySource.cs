using Shoal.Contracts;

namespace Shoal.Core.Access;

/// <summary>The endpoint keys an edge accepts: hash → the project whose endpoints the key may call.</summary>
public interface IEndpointKeySource
{
    /// <summary>An immutable snapshot; replaced as a whole when keys change.</summary>
    IReadOnlyDictionary<string, EndpointKeyGrant> EndpointKeys { get; }
}

/// <summary>Endpoint keys pushed to a standalone edge by the control plane (none until the first push: fail closed).</summary>
public sealed class EndpointKeyHolder : IEndpointKeySource
{
    private volatile IReadOnlyDictionary<string, EndpointKeyGrant> _current = new Dictionary<string, EndpointKeyGrant>(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, EndpointKeyGrant> EndpointKeys => _current;

    public void Update(IReadOnlyDictionary<string, EndpointKeyGrant> keys) => _current = keys;
}
