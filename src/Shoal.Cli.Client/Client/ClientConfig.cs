using System.Text.Json;
using System.Text.Json.Serialization;

namespace Shoal.Cli.Client;

/// <summary>
/// Where the client finds the server: <c>SHOAL_ADDR</c>, else the config file
/// (<c>$SHOAL_CONFIG</c>, else <c>$XDG_CONFIG_HOME/shoal/config.json</c>, else <c>~/.config/shoal/config.json</c>),
/// else <see cref="DefaultAddress"/>.
/// </summary>
public sealed record ClientConfig
{
    public const string DefaultAddress = "http://127.0.0.1:7400";
    public const string AddressVariable = "SHOAL_ADDR";
    public const string ConfigPathVariable = "SHOAL_CONFIG";
    public const string XdgConfigHomeVariable = "XDG_CONFIG_HOME";
    public const string ApiKeyVariable = "SHOAL_API_KEY";

    /// <summary>The server's API address, e.g. <c>http://127.0.0.1:7400</c>.</summary>
    public string? Addr { get; init; }

    /// <summary>The API key the client sends (<c>shoal login</c> saves it; the file is 0600).</summary>
    public string? ApiKey { get; init; }

    /// <summary>The API key to use: <c>--api-key</c>, then <c>SHOAL_API_KEY</c>, then the config file; null when none.</summary>
    /// <exception cref="ClientConfigException">the config file exists but cannot be read.</exception>
    public static string? ResolveApiKey(string? explicitKey = null, Func<string, string?>? getEnvironmentVariable = null, string? homeDirectory = null)
    {
        getEnvironmentVariable ??= Environment.GetEnvironmentVariable;
        if (!string.IsNullOrWhiteSpace(explicitKey)) return explicitKey.Trim();
        var fromEnvironment = getEnvironmentVariable(ApiKeyVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment)) return fromEnvironment.Trim();
        var key = Load(GetConfigPath(getEnvironmentVariable, homeDirectory))?.ApiKey;
        return string.IsNullOrWhiteSpace(key) ? null : key.Trim();
    }

    /// <summary>The address to use in this process: flag, then environment, then config file, then default.</summary>
    /// <param name="explicitAddress">the <c>--addr</c> option, when given; wins over everything else.</param>
    /// <param name="getEnvironmentVariable">environment lookup; the process environment when null.</param>
    /// <param name="homeDirectory">the user's home; the real one when null.</param>
    /// <exception cref="ClientConfigException">the config file exists but cannot be read, or an address is malformed.</exception>
    public static Uri ResolveAddress(string? explicitAddress = null, Func<string, string?>? getEnvironmentVariable = null, string? homeDirectory = null)
    {
        getEnvironmentVariable ??= Environment.GetEnvironmentVariable;
        if (!string.IsNullOrWhiteSpace(explicitAddress))
        {
            return ParseAddress(explicitAddress, "--addr");
        }

        var fromEnvironment = getEnvironmentVariable(AddressVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            return ParseAddress(fromEnvironment, AddressVariable);
        }

        var path = GetConfigPath(getEnvironmentVariable, homeDirectory);
        var config = Load(path);
        if (!string.IsNullOrWhiteSpace(config?.Addr))
        {
            return ParseAddress(config.Addr, path);
        }

        return new Uri(DefaultAddress);
    }

    /// <summary>The config file this process reads and <see cref="Save(string)"/> writes.</summary>
    public static string GetConfigPath(Func<string, string?>? getEnvironmentVariable = null, string? homeDirectory = null)
    {
        getEnvironmentVariable ??= Environment.GetEnvironmentVariable;
        var explicitPath = getEnvironmentVariable(ConfigPathVariable);
        if (!string.IsNullOrWhiteSpace(explicitPath))
        {
            return explicitPath;
        }

        var xdg = getEnvironmentVariable(XdgConfigHomeVariable);
        if (!string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg))
        {
            return Path.Combine(xdg, "shoal", "config.json");
        }

        homeDirectory ??= Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(homeDirectory, ".config", "shoal", "config.json");
    }

    /// <summary>Reads a config file; null when it does not exist.</summary>
    /// <exception cref="ClientConfigException">it exists but is not valid config JSON.</exception>
    public static ClientConfig? Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ClientConfigException($"cannot read the client config {path}: {ex.Message}", ex);
        }

        try
        {
            return JsonSerializer.Deserialize(text, ClientConfigJsonContext.Default.ClientConfig);
        }
        catch (JsonException ex)
        {
            throw new ClientConfigException($"the client config {path} is not valid JSON ({ex.Message}); expected {{\"addr\": \"{DefaultAddress}\"}}", ex);
        }
    }

    /// <summary>Writes <paramref name="addr"/> to the config file (see <see cref="GetConfigPath"/>); returns the path written.</summary>
    public static string Save(string addr) => SaveWithKey(addr, null, GetConfigPath());

    /// <summary>Writes <paramref name="addr"/> to the config file at <paramref name="path"/>, creating its directory.</summary>
    public static string Save(string addr, string path) => SaveWithKey(addr, null, path);

    /// <summary>
    /// Writes <paramref name="addr"/> and <paramref name="apiKey"/> to the config file at
    /// <paramref name="path"/> (the default one when null; mode 0600, as it may hold a key), creating its directory.
    /// </summary>
    public static string SaveWithKey(string addr, string? apiKey, string? path = null)
    {
        path ??= GetConfigPath();
        var normalized = ParseAddress(addr, "address").ToString().TrimEnd('/');
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        // Write beside and rename so a reader never sees half a file.
        var temp = path + ".tmp-" + Environment.ProcessId;
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var writer = new StreamWriter(temp, System.Text.Encoding.UTF8, options))
        {
            writer.Write(JsonSerializer.Serialize(new ClientConfig { Addr = normalized, ApiKey = apiKey }, ClientConfigJsonContext.Default.ClientConfig) + "\n");
        }

        File.Move(temp, path, overwrite: true);
        return path;
    }

    /// <summary>Parses an address; a bare <c>host:port</c> gets <c>http://</c>.</summary>
    /// <exception cref="ClientConfigException">not an http(s) address.</exception>
    public static Uri ParseAddress(string value, string source)
    {
        ArgumentNullException.ThrowIfNull(value);
        var text = value.Trim();
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || string.IsNullOrEmpty(uri.Host))
        {
            throw new ClientConfigException($"'{value}' (from {source}) is not a server address; expected something like {DefaultAddress}");
        }

        return uri;
    }
}

/// <summary>The client configuration (address, config file) is unusable.</summary>
public sealed class ClientConfigException : Exception
{
    public ClientConfigException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ClientConfig))]
internal sealed partial class ClientConfigJsonContext : JsonSerializerContext;
