using Shoal.Core.Security;

namespace Shoal.ControlPlane.Edges;

/// <summary>
/// The key standalone edges present to take the route table. Configured, or generated once and
/// kept in <c>{data-dir}/edge.key</c> (mode 0600); only its hash stays in memory.
/// </summary>
public sealed class EdgeKey
{
    public const string FileName = "edge.key";

    private readonly string _hash;

    private EdgeKey(string hash, string? file)
    {
        _hash = hash;
        FilePath = file;
    }

    /// <summary>Where the generated key was written; null when the key was configured.</summary>
    public string? FilePath { get; }

    public bool Matches(string? presented) => !string.IsNullOrEmpty(presented) && Secrets.Matches(presented, _hash);

    public static EdgeKey Load(ServerOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.EdgeKey)) return new EdgeKey(Secrets.Hash(options.EdgeKey.Trim()), null);

        var path = Path.Combine(PrivateFiles.CreateDirectory(options.DataDir), FileName);
        // Another server instance on the same data dir may write it first; then theirs is used.
        PrivateFiles.TryCreate(path, Secrets.NewToken("shoal_ek_"));
        PrivateFiles.Restrict(path);
        var stored = File.ReadAllText(path).Trim();
        if (stored.Length == 0) throw new InvalidOperationException($"the edge key file {path} is empty; delete it to generate a new key");
        return new EdgeKey(Secrets.Hash(stored), path);
    }
}
