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

    /// <summary>
    /// How long a replica may stay unhealthy (failing its health check after the failure threshold;
    /// it is out of routing all that time) before the agent stops it and starts it again, with the
    /// same back-off as after a crash. Rides out a short stall without paying for a model reload;
    /// by then the replica has failed its probes for the failure threshold already (about 8 s with
    /// the default health check), and the edge has moved its requests elsewhere. Default: 5 s.
    /// </summary>
    public TimeSpan UnhealthyRestartAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Probe interval while a replica starts, so readiness is seen quickly. Default: 100 ms.</summary>
    public TimeSpan StartingProbeInterval { get; set; } = TimeSpan.FromMilliseconds(100);
}
