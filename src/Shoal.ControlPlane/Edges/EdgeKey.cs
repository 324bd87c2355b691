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

        var dir = Path.GetFullPath(options.DataDir);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path))
        {
            var key = Secrets.NewToken("shoal_ek_");
            var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            try
            {
                using var writer = new StreamWriter(path, System.Text.Encoding.ASCII, fileOptions);
                writer.Write(key);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another server instance on the same data dir wrote it first; use theirs.
            }
        }
        var stored = File.ReadAllText(path).Trim();
        if (stored.Length == 0) throw new InvalidOperationException($"the edge key file {path} is empty; delete it to generate a new key");
        return new EdgeKey(Secrets.Hash(stored), path);
    }
}
