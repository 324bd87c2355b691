namespace Shoal.Edge.Routing;

/// <summary>
/// Wakes requests held for a replica: fired when the route table changes, when an ejection ends,
/// and by an <see cref="Upstreams.IUpstreamConnector"/> whose reachability changed (a tunnel opened).
/// Take <see cref="Next"/> before looking for a replica, then await it, so no change is missed.
/// </summary>
public sealed class RoutingSignal
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes at the next <see cref="Fire"/>.</summary>
    public Task Next => Volatile.Read(ref _next).Task;

    /// <summary>Raised at every <see cref="Fire"/>, on the firing thread: handlers only schedule work.</summary>
    public event Action? Fired;

    public void Fire()
    {
        var previous = Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        previous.TrySetResult();
        Fired?.Invoke();
    }
}
