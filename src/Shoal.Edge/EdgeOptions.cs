namespace Shoal.Edge;

/// <summary>Settings of the edge proxy; every property has a documented default.</summary>
public sealed class EdgeOptions
{
    /// <summary>Request bodies up to this size are buffered so a failed attempt can be replayed on another replica (1 MiB).</summary>
    public const int ReplayBufferBytes = 1024 * 1024;

    /// <summary>Address the edge listens on (<c>host:port</c>; host an IP, <c>localhost</c> or <c>*</c>). Default <c>127.0.0.1:8080</c>.</summary>
    public string Listen { get; set; } = "127.0.0.1:8080";

    /// <summary>Domain for host-based routing: <c>{cluster}.{Domain}</c>. Default <c>localhost</c>.</summary>
    public string Domain { get; set; } = "localhost";

    /// <summary>Seconds clients are told to wait (Retry-After) when a cluster has no ready replica.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>Largest request body accepted, in bytes; larger ones get 413. Default 16 MiB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>Most replicas one request is tried on (distinct while there are untried ones). Default 3.</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>A retry is only started this soon after the request arrived. Default 30 s.</summary>
    public TimeSpan RetryBudget { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Consecutive failures (502/503, errors before a response) that eject a replica. Default 3; a refused connection ejects at once.</summary>
    public int EjectionThreshold { get; set; } = 3;

    /// <summary>First ejection period; it doubles with each ejection in a row up to <see cref="MaxEjection"/>, and resets on a success. Default 1 s.</summary>
    public TimeSpan BaseEjection { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest ejection period. Default 30 s.</summary>
    public TimeSpan MaxEjection { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A forwarded request is cancelled when nothing moves in either direction for this long
    /// (waiting for response headers included, so it bounds a replica's time to first byte). Default 5 min.
    /// </summary>
    public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Time-to-first-byte cap of an attempt, for clusters whose route does not set their own
    /// (<c>firstByteTimeoutSeconds</c>): an attempt without response headers by then is cut and
    /// retried on another replica, when the request may be retried (its body replayable, attempts
    /// left, the retry still within <see cref="RetryBudget"/>) and another replica can take it.
    /// Default none: a non-streaming LLM answer arrives whole, so its time to first byte is its
    /// generation time, which may rightly be minutes; a cap below that would cut good answers and
    /// repeat their work elsewhere, worst when replicas are slow from overload. A hung replica is
    /// still left within its health check's detection time: when it leaves the route table,
    /// attempts to it without a response are cut and retried.
    /// </summary>
    public TimeSpan? FirstByteTimeout { get; set; }

    /// <summary>
    /// A client that takes longer than this to accept a write of the response (it stopped reading a
    /// stream) is disconnected, so it cannot hold a replica slot. Default 30 s.
    /// </summary>
    public TimeSpan ClientStallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a client may take to send its request headers. Default 15 s.</summary>
    public TimeSpan RequestHeadersTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Slowest a client may send a request body or read a response, in bytes per second, after
    /// <see cref="MinDataRateGracePeriod"/>; slower connections are closed, so a stalled client
    /// cannot hold a replica slot. Default 240 (Kestrel's).
    /// </summary>
    public double MinDataRateBytesPerSecond { get; set; } = 240;

    /// <summary>Grace period before <see cref="MinDataRateBytesPerSecond"/> applies. Default 5 s.</summary>
    public TimeSpan MinDataRateGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Most connections the edge holds at once (HTTP, tunnels and connections that have not yet
    /// said which they are); further ones are closed as soon as they are accepted. Null (the
    /// default): 10,000, lowered to what the process's file limit leaves room for (see
    /// <see cref="Connections.EdgeConnectionLimits.Automatic"/>), so the edge refuses connections before the
    /// process runs out of file descriptors.
    /// </summary>
    public int? MaxConnections { get; set; }

    /// <summary>
    /// Share of the process's file limit the automatic <see cref="MaxConnections"/> may plan for:
    /// 1 for a standalone edge; the edge inside <c>shoal server</c> leaves half to the API and the
    /// agents' connections.
    /// </summary>
    public double FileLimitShare { get; set; } = 1;

    /// <summary>
    /// Most HTTP (and still undecided) connections from one IP address at once; tunnels count per
    /// node instead (<see cref="MaxTunnelsPerNode"/>), so nodes behind one NAT address are not
    /// limited by it. Default 2,000 (one client may well run a thousand streams at once over HTTP/1.1).
    /// </summary>
    public int MaxConnectionsPerAddress { get; set; } = 2000;

    /// <summary>Most tunnels one node holds to this edge at once (idle and busy); further ones are refused. Default 256.</summary>
    public int MaxTunnelsPerNode { get; set; } = 256;

    /// <summary>
    /// A new connection that has not begun either a tunnel greeting or an HTTP request this long
    /// after it was accepted (after the TLS handshake, on an https edge) is closed. Default 5 s.
    /// </summary>
    public TimeSpan UndecidedConnectionTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>PEM certificate file for TLS (with <see cref="TlsKeyPath"/>). Default none: plain HTTP.</summary>
    public string? TlsCertificatePath { get; set; }

    /// <summary>
    /// The key a scraper sends (<c>Authorization: Bearer</c>) to read <c>/metrics</c>. Without one,
    /// <c>/metrics</c> answers 401 to everybody: what clusters exist and how busy they are is not public.
    /// </summary>
    public string? MetricsKey { get; set; }

    /// <summary>PEM private key file of <see cref="TlsCertificatePath"/>.</summary>
    public string? TlsKeyPath { get; set; }

    /// <summary>PKCS#12 (PFX) file holding certificate and key, instead of PEM files.</summary>
    public string? TlsPfxPath { get; set; }

    /// <summary>Password of <see cref="TlsPfxPath"/> (or of an encrypted PEM key). Default none.</summary>
    public string? TlsPassword { get; set; }

    /// <summary>True when a certificate is configured, so the edge serves HTTPS.</summary>
    public bool UsesTls => !string.IsNullOrEmpty(TlsCertificatePath) || !string.IsNullOrEmpty(TlsPfxPath);

    /// <summary>The edge's name in usage records and metrics. Default: the machine's host name.</summary>
    public string? Name { get; set; }

    /// <summary>
    /// Directory of the usage ledger's spool (<see cref="Gateway.UsageSpool"/>): one row per request,
    /// appended here before it is shipped to the control plane. Null: no ledger (requests are not
    /// recorded). <c>shoal edge</c> defaults it to <c>~/.shoal/edge-spool/{name}</c>, <c>shoal server</c>
    /// to <c>edge-spool</c> in its data dir.
    /// </summary>
    public string? SpoolDirectory { get; set; }

    /// <summary>
    /// Redis shared by the edges for the gateway's counters (rate limits, budgets), as a
    /// StackExchange.Redis configuration string (<c>127.0.0.1:6379</c>). Null: counters live in this edge.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>
    /// Held requests a replica that just entered the route table takes at once (requests in flight
    /// to it from this edge count against it): a replica that wakes a cluster from zero gets its
    /// first requests without the rest of the burst in front of them. Each answer it gives back
    /// while requests are held frees its place and widens the window by one (so it doubles with
    /// every round of answers); without answers it still doubles every
    /// <see cref="HeldReleaseDoubling"/> (long generations do not keep requests held for long).
    /// Only held requests wait for it; 0 hands every held request on at once. Default 32.
    /// </summary>
    public int HeldReleaseWindow { get; set; } = 32;

    /// <summary>How often <see cref="HeldReleaseWindow"/> doubles for a replica that entered the route table, answers or not. Default 1 s.</summary>
    public TimeSpan HeldReleaseDoubling { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Every problem with these settings, one message each; empty when they are usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!string.IsNullOrWhiteSpace(Redis))
        {
            try
            {
                if (StackExchange.Redis.ConfigurationOptions.Parse(Redis).EndPoints.Count == 0) errors.Add($"redis '{Redis}' names no host:port");
            }
            catch (ArgumentException e)
            {
                errors.Add($"redis '{Redis}' is not a Redis configuration (host:port): {e.Message}");
            }
        }
        if (!EdgeListenAddress.TryParse(Listen, out _)) errors.Add($"edge listen address '{Listen}' is not host:port (host an IP address, 'localhost' or '*')");
        if (string.IsNullOrWhiteSpace(Domain)) errors.Add("edge domain must not be empty");
        if (RetryAfterSeconds is < 0 or > 3600) errors.Add("Retry-After seconds must be between 0 and 3600");
        if (MaxRequestBodyBytes < 1) errors.Add("the largest request body must be at least 1 byte");
        if (MaxAttempts is < 1 or > 10) errors.Add("attempts per request must be between 1 and 10");
        if (RetryBudget < TimeSpan.Zero) errors.Add("retry budget must not be negative");
        if (EjectionThreshold is < 1 or > 100) errors.Add("ejection threshold must be between 1 and 100");
        if (BaseEjection <= TimeSpan.Zero || MaxEjection < BaseEjection) errors.Add("ejection periods must be positive, the longest at least the first");
        if (ActivityTimeout <= TimeSpan.Zero) errors.Add("activity timeout must be positive");
        if (FirstByteTimeout is { } firstByte && firstByte < TimeSpan.Zero) errors.Add("first-byte timeout must not be negative");
        if (ClientStallTimeout <= TimeSpan.Zero) errors.Add("client stall timeout must be positive");
        if (RequestHeadersTimeout <= TimeSpan.Zero) errors.Add("request headers timeout must be positive");
        if (!double.IsFinite(MinDataRateBytesPerSecond) || MinDataRateBytesPerSecond <= 0) errors.Add("minimum data rate must be a positive number");
        if (MinDataRateGracePeriod <= TimeSpan.FromSeconds(1)) errors.Add("minimum data rate grace period must be more than 1 s");
        if (MaxConnections is < 1) errors.Add("the most connections must be at least 1");
        if (!double.IsFinite(FileLimitShare) || FileLimitShare is <= 0 or > 1) errors.Add("the edge's share of the file limit must be more than 0 and at most 1");
        if (MaxConnectionsPerAddress < 1) errors.Add("the most connections per address must be at least 1");
        if (MaxTunnelsPerNode < 1) errors.Add("the most tunnels per node must be at least 1");
        if (UndecidedConnectionTimeout <= TimeSpan.Zero) errors.Add("undecided connection timeout must be positive");
        if (HeldReleaseWindow < 0) errors.Add("the held-release window must not be negative");
        if (HeldReleaseDoubling <= TimeSpan.Zero) errors.Add("the held-release doubling period must be positive");

        var pem = !string.IsNullOrEmpty(TlsCertificatePath);
        var pfx = !string.IsNullOrEmpty(TlsPfxPath);
        if (pem && pfx) errors.Add("give either a PEM certificate and key or a PFX file, not both");
        if (pem && string.IsNullOrEmpty(TlsKeyPath)) errors.Add("a PEM certificate needs its key file (--edge-tls-key)");
        if (!pem && !string.IsNullOrEmpty(TlsKeyPath)) errors.Add("a TLS key file needs its certificate (--edge-tls-cert)");
        foreach (var path in (ReadOnlySpan<string?>)[TlsCertificatePath, TlsKeyPath, TlsPfxPath])
        {
            if (!string.IsNullOrEmpty(path) && !File.Exists(path)) errors.Add($"TLS file '{path}' does not exist");
        }
        return errors;
    }
}
