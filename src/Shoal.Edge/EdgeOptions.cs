namespace Shoal.Edge;

/// <summary>Settings of the edge proxy.</summary>
public sealed class EdgeOptions
{
    /// <summary>Address the edge listens on. Default <c>127.0.0.1:8080</c>.</summary>
    public string Listen { get; set; } = "127.0.0.1:8080";

    /// <summary>Domain for host-based routing: <c>{cluster}.{Domain}</c>. Default <c>localhost</c>.</summary>
    public string Domain { get; set; } = "localhost";

    /// <summary>Seconds clients are told to wait (Retry-After) when a cluster has no ready replica.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>Largest request body accepted, in bytes. Default 16 MiB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 16 * 1024 * 1024;
}
