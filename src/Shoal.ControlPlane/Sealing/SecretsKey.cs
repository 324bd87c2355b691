using Shoal.Core.Security;

namespace Shoal.ControlPlane.Sealing;

/// <summary>
/// The key that seals secret env values and registry passwords in the store. Configured
/// (<see cref="ServerOptions.SecretsKey"/>, from <c>SHOAL_SECRETS_KEY</c>), read from
/// <see cref="ServerOptions.SecretsKeyFile"/>, or generated on the first start into
/// <c>{data-dir}/secrets.key</c> (mode 0600). It is never written to the store.
/// </summary>
public sealed class SecretsKey
{
    public const string FileName = "secrets.key";

    /// <summary>Environment variable <c>shoal server</c> reads the key from (base64 of 32 bytes).</summary>
    public const string EnvironmentVariable = "SHOAL_SECRETS_KEY";

    private SecretsKey(SecretBox box, string? file, bool created)
    {
        Box = box;
        FilePath = file;
        Created = created;
    }

    public SecretBox Box { get; }

    /// <summary>The key file; null when the key was configured directly.</summary>
    public string? FilePath { get; }

    /// <summary>True when this start generated the key file.</summary>
    public bool Created { get; }

    /// <summary>Where the key came from, for messages (never the key).</summary>
    public string Source => FilePath ?? EnvironmentVariable;

    /// <exception cref="ArgumentException">The configured key or key file is not a valid key, or a named key file does not exist.</exception>
    public static SecretsKey Load(ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!string.IsNullOrWhiteSpace(options.SecretsKey))
        {
            return new SecretsKey(Parse(options.SecretsKey, EnvironmentVariable), null, false);
        }

        var created = false;
        string path;
        if (options.SecretsKeyFile is { Length: > 0 } named)
        {
            // A named file is never made up: a typo must not start the server with a new, empty key.
            path = Path.GetFullPath(named);
            if (!File.Exists(path)) throw new ArgumentException($"--secrets-key-file: {path} does not exist");
        }
        else
        {
            path = Path.Combine(PrivateFiles.CreateDirectory(options.DataDir), FileName);
            // Another server on the same data dir may win the race; then its key is the one.
            created = PrivateFiles.TryCreate(path, SecretBox.NewKeyText() + "\n");
        }
        PrivateFiles.Restrict(path);
        return new SecretsKey(Parse(File.ReadAllText(path), path), path, created);
    }

    /// <summary>
    /// After a start failed because the store's secrets do not open with this key: removes the file
    /// this start generated (nothing was sealed with it), so the data dir is as it was.
    /// </summary>
    public void ForgetCreated()
    {
        if (Created && FilePath is not null) File.Delete(FilePath);
    }

    private static SecretBox Parse(string text, string source)
    {
        try
        {
            return SecretBox.FromKeyText(text);
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"secrets key from {source}: {e.Message}", e);
        }
    }
}
