namespace Shoal.Cli;

/// <summary>Process exit codes of the <c>shoal</c> client commands; scripts may rely on them.</summary>
public static class ExitCodes
{
    public const int Success = 0;

    /// <summary>Anything not covered below, such as an internal server error.</summary>
    public const int Failure = 1;

    /// <summary>Bad command line or a request the server rejected as invalid; nothing was changed.</summary>
    public const int InvalidInput = 2;

    /// <summary>No connection to the Shoal server (refused, DNS, timed out).</summary>
    public const int ServerUnreachable = 3;

    public const int NotFound = 4;

    /// <summary>The thing to create already exists.</summary>
    public const int Conflict = 5;

    public const int Unauthorized = 6;

    /// <summary><c>deploy --wait</c> gave up before every replica was ready.</summary>
    public const int Timeout = 7;

    /// <summary><c>update --wait</c>: the update failed and the cluster was rolled back to its previous generation.</summary>
    public const int RolledBack = 8;

    /// <summary>Interrupted with Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;
}
