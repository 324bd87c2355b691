namespace Shoal.ControlPlane.Edges;

/// <summary>
/// The edges agents should keep tunnels open to: the in-process edge (if any) plus every
/// standalone edge connected now, by the URL it advertises. Several edges may share a URL (behind
/// one load balancer); the URL stays listed while any of them is connected.
/// </summary>
public sealed class EdgeDirectory
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, int> _connected = new(StringComparer.Ordinal);
    private string? _local;
    private string[] _urls = [];

    /// <summary>Raised (outside the lock) when <see cref="Urls"/> changed.</summary>
    public event Action<string[]>? Changed;

    public string[] Urls => Volatile.Read(ref _urls);

    /// <summary>The URL of the edge running inside this server process, once it listens; null otherwise.</summary>
    public string? Local => Volatile.Read(ref _local);

    /// <summary>The edge running inside this server process.</summary>
    public void SetLocal(string? url) => Mutate(() => Volatile.Write(ref _local, url));

    /// <summary>A standalone edge connected; dispose the result when it disconnects.</summary>
    public IDisposable Register(string url)
    {
        Mutate(() => _connected[url] = _connected.GetValueOrDefault(url) + 1);
        return new Registration(this, url);
    }

    private void Unregister(string url) => Mutate(() =>
    {
        if (_connected.TryGetValue(url, out var n) && n > 1) _connected[url] = n - 1;
        else _connected.Remove(url);
    });

    private void Mutate(Action change)
    {
        string[] next;
        lock (_lock)
        {
            change();
            var set = new SortedSet<string>(_connected.Keys, StringComparer.Ordinal);
            if (_local is not null) set.Add(_local);
            next = [.. set];
            if (next.AsSpan().SequenceEqual(_urls)) return;
            Volatile.Write(ref _urls, next);
        }
        Changed?.Invoke(next);
    }

    private sealed class Registration(EdgeDirectory directory, string url) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) directory.Unregister(url);
        }
    }
}
