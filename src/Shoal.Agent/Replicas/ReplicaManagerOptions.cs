namespace Shoal.Agent.Replicas;

/// <summary>How the agent supervises replicas.</summary>
public sealed class ReplicaManagerOptions
{
    /// <summary>Time between SIGTERM and kill when stopping. Default: 10 s.</summary>
    public TimeSpan StopGracePeriod { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>First restart delay after a crash; doubles each time. Default: 1 s.</summary>
    public TimeSpan RestartBackoffMin { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest restart delay. Default: 30 s.</summary>
    public TimeSpan RestartBackoffMax { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A replica that ran this long before exiting restarts after the shortest delay again. Default: 60 s.</summary>
    public TimeSpan RestartBackoffResetAfter { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Probe interval while a replica starts, so readiness is seen quickly. Default: 100 ms.</summary>
    public TimeSpan StartingProbeInterval { get; set; } = TimeSpan.FromMilliseconds(100);
}
