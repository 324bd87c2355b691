namespace Shoal.Core.Tunnels;

/// <summary>The credential hashes the edge checks tunnel connections against.</summary>
public interface INodeCredentialSource
{
    /// <summary>Node id → SHA-256 hash (hex) of the node secret, as an immutable snapshot.</summary>
    IReadOnlyDictionary<string, string> NodeCredentials { get; }
}

/// <summary>Credentials pushed to a standalone edge by the control plane.</summary>
public sealed class NodeCredentialHolder : INodeCredentialSource
{
    private volatile IReadOnlyDictionary<string, string> _current = new Dictionary<string, string>(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, string> NodeCredentials => _current;

    /// <summary>True once the control plane has sent credentials at least once.</summary>
    public bool Loaded { get; private set; }

    public void Update(IReadOnlyDictionary<string, string> credentials)
    {
        _current = credentials;
        Loaded = true;
    }
}
