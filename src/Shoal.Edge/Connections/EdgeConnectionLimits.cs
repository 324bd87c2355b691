using System.Globalization;

namespace Shoal.Edge.Connections;

/// <summary>
/// How many connections an edge can hold without running its process out of file descriptors:
/// every connection is one descriptor, and a proxied one may hold a second towards its replica.
/// </summary>
public static class EdgeConnectionLimits
{
    /// <summary>The most connections when nothing lower is called for.</summary>
    public const int Default = 10_000;

    /// <summary>Descriptors left to the runtime itself: assemblies, pipes, epoll, threads, logs, the store.</summary>
    public const int Reserved = 256;

    /// <summary>
    /// Descriptors that must stay free: a connection accepted into one of the last this many is
    /// closed at once, whoever used up the others. The runtime needs a few for every thread it
    /// starts and every assembly it loads, and fails the whole process when it cannot have them.
    /// </summary>
    public const int Headroom = 128;

    /// <summary>The fewest connections the automatic limit goes down to, however low the file limit.</summary>
    public const int Floor = 16;

    /// <summary>
    /// The automatic connection limit: <see cref="Default"/>, or less when the file limit leaves no
    /// room for it: (limit − <see cref="Reserved"/>) × <paramref name="share"/> / 2, two descriptors
    /// a connection. For a file limit of 1,024: 384 for a standalone edge, 192 in <c>shoal server</c>.
    /// </summary>
    public static int Automatic(long? fileLimit, double share = 1)
    {
        if (fileLimit is not { } limit) return Default;
        var budget = (limit - Reserved) * share / 2;
        return (int)Math.Clamp(budget, Floor, Default);
    }

    /// <summary>
    /// The connection limit the options call for: <see cref="EdgeOptions.MaxConnections"/> when set,
    /// else <see cref="Automatic"/> for this process's file limit.
    /// </summary>
    public static int Resolve(EdgeOptions options, long? fileLimit) =>
        options.MaxConnections ?? Automatic(fileLimit, options.FileLimitShare);

    /// <summary>The process's soft limit on open files (<c>ulimit -n</c>), or null where it cannot be read (not Linux, or unlimited).</summary>
    public static long? ProcessFileLimit()
    {
        // Read where the kernel reports it rather than calling getrlimit, whose numbering differs per OS.
        const string Path = "/proc/self/limits";
        try
        {
            if (!File.Exists(Path)) return null;
            foreach (var line in File.ReadLines(Path))
            {
                if (!line.StartsWith("Max open files", StringComparison.Ordinal)) continue;
                var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return fields.Length > 0 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var soft) ? soft : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
