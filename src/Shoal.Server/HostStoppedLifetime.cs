namespace Shoal.Server;

/// <summary>
/// A host lifetime that leaves SIGINT and SIGTERM alone (the default one stops the host on them):
/// for a server inside another command (<c>shoal dev</c>) that stops its agents first and the
/// server last, so a Ctrl-C is one orderly stop rather than every part stopping at once.
/// </summary>
internal sealed class HostStoppedLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
