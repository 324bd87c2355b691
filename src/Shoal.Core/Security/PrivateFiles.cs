namespace Shoal.Core.Security;

/// <summary>
/// Files and directories only their owner may read: data dirs 0700, key files and databases 0600.
/// On Windows (no Unix modes) these only create; access is left to the directory's ACLs.
/// </summary>
public static class PrivateFiles
{
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Creates <paramref name="path"/> (and missing parents) as 0700; an existing one is narrowed to 0700.</summary>
    public static string CreateDirectory(string path)
    {
        var full = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(full);
            return full;
        }
        Directory.CreateDirectory(full, DirectoryMode);
        if ((File.GetUnixFileMode(full) & ~DirectoryMode) != 0) File.SetUnixFileMode(full, DirectoryMode);
        return full;
    }

    /// <summary>Narrows an existing file to 0600; nothing when it does not exist.</summary>
    public static void Restrict(string path)
    {
        if (OperatingSystem.IsWindows() || !File.Exists(path)) return;
        if ((File.GetUnixFileMode(path) & ~FileMode) != 0) File.SetUnixFileMode(path, FileMode);
    }

    /// <summary>
    /// Writes <paramref name="content"/> to a new file created 0600 (never wider, not even for a moment).
    /// Returns false, writing nothing, when the file already exists.
    /// </summary>
    public static bool TryCreate(string path, string content)
    {
        var options = new FileStreamOptions { Mode = System.IO.FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = FileMode;
        try
        {
            using var writer = new StreamWriter(path, System.Text.Encoding.ASCII, options);
            writer.Write(content);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }
}
