using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>A real store that counts the commits made through it, and can hold the next ones back (to show what waits on the state's lock).</summary>
internal sealed class CountingStore(IShoalStore inner) : DelegatingShoalStore(inner)
{
    private int _commits;

    public int Commits => Volatile.Read(ref _commits);

    /// <summary>When set, commits wait for it (the state's lock is held meanwhile).</summary>
    public TaskCompletionSource? Hold { get; set; }

    public override async Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _commits);
        if (Hold is { } hold) await hold.Task.WaitAsync(cancellationToken);
        await Inner.CommitAsync(changes, cancellationToken);
    }
}
