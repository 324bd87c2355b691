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
        return new EdgeKey(Secrets.Hash(LoadOrCreate(path, "shoal_ek_")), path);
    }

    /// <summary>
    /// The key in <paramref name="path"/> (in a private data dir), created there first (0600, a new
    /// random key with <paramref name="prefix"/>) when the file does not exist.
    /// </summary>
    public static string LoadOrCreate(string path, string prefix)
    {
        // Another server instance on the same data dir may write it first; then theirs is used.
        PrivateFiles.TryCreate(path, Secrets.NewToken(prefix));
        PrivateFiles.Restrict(path);
        var stored = File.ReadAllText(path).Trim();
        if (stored.Length == 0) throw new InvalidOperationException($"the key file {path} is empty; delete it to generate a new key");
        return stored;
    }
}
