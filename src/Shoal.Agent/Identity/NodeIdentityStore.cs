using System.Text.Json;

namespace Shoal.Agent.Identity;

/// <summary>
/// Reads and writes <c>node.json</c> in the data dir. Writes are atomic (temp file, then rename)
/// and the file is readable by its owner only (0600), since it holds the node secret.
/// </summary>
public sealed class NodeIdentityStore
{
    public const string FileName = "node.json";

    public NodeIdentityStore(string dataDir)
    {
        DataDir = dataDir;
        FilePath = Path.Combine(dataDir, FileName);
    }

    public string DataDir { get; }

    public string FilePath { get; }

    /// <summary>The saved identity, or null when there is none.</summary>
    /// <exception cref="AgentConfigurationException">The file exists but cannot be read or parsed.</exception>
    public NodeIdentity? Load()
    {
        if (!File.Exists(FilePath))
        {
            return null;
        }
        try
        {
            var bytes = File.ReadAllBytes(FilePath);
            var identity = JsonSerializer.Deserialize(bytes, AgentJsonContext.Default.NodeIdentity);
            if (identity is null || string.IsNullOrWhiteSpace(identity.NodeId) || string.IsNullOrWhiteSpace(identity.NodeSecret))
            {
                throw new AgentConfigurationException($"{FilePath} does not hold a node id and secret; delete it and register again with a provisioning token");
            }
            return identity;
        }
        catch (JsonException ex)
        {
            throw new AgentConfigurationException($"{FilePath} is not valid JSON ({ex.Message}); delete it and register again with a provisioning token", ex);
        }
        catch (IOException ex)
        {
            throw new AgentConfigurationException($"cannot read {FilePath}: {ex.Message}", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new AgentConfigurationException($"cannot read {FilePath}: {ex.Message}", ex);
        }
    }

    /// <summary>Writes the identity atomically with mode 0600.</summary>
    public void Save(NodeIdentity identity)
    {
        Directory.CreateDirectory(DataDir);
        var temp = Path.Combine(DataDir, $".{FileName}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
            };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var stream = new FileStream(temp, options))
            {
                JsonSerializer.Serialize(stream, identity, AgentJsonContext.Default.NodeIdentity);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, FilePath, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
