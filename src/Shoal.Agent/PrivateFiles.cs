namespace Shoal.Agent;

/// <summary>
/// Directories and files only the agent's user may read: the data dir (0700) holds the node secret
/// and the replicas' logs (0600), which may hold whatever a workload prints.
/// </summary>
public static class PrivateFiles
{
    /// <summary>Owner read and write: 0600.</summary>
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Owner read, write and search: 0700.</summary>
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>
    /// Creates <paramref name="path"/> (and its missing parents) as 0700, or takes group and other
    /// access away from it when it exists. Returns false, changing nothing, for an existing directory
    /// that looks shared (sticky, such as <c>/tmp</c>, or not owned by this user): the caller warns.
    /// </summary>
    public static bool CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return true;
        }
        if (!Directory.Exists(path))
        {
            Directory.CreateDirectory(path, DirectoryMode);
            return true;
        }
        var mode = File.GetUnixFileMode(path);
        if ((mode & GroupOrOther) == 0)
        {
            return true;
        }
        if ((mode & UnixFileMode.StickyBit) != 0)
        {
            return false;
        }
        try
        {
            File.SetUnixFileMode(path, mode & ~GroupOrOther);
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Takes group and other access away from an existing file (one an older agent made).</summary>
    public static void Restrict(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        try
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & GroupOrOther) != 0)
            {
                File.SetUnixFileMode(path, mode & ~GroupOrOther);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Opens <paramref name="path"/> for appending, creating it as 0600.</summary>
    public static FileStream OpenAppend(string path)
    {
        var options = new FileStreamOptions
        {
            Mode = System.IO.FileMode.Append,
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite | FileShare.Delete,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = FileMode;
        }
        return new FileStream(path, options);
    }
}
