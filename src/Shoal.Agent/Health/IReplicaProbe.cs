using Shoal.Contracts;

namespace Shoal.Agent.Health;

/// <summary>Checks a replica's health path and reads its load.</summary>
public interface IReplicaProbe
{
    /// <summary>True when the health path answers 2xx within the spec's timeout.</summary>
    Task<bool> ProbeAsync(int port, HealthCheckSpec spec, CancellationToken ct);

    /// <summary>Load from <c>/metrics</c>, or null when the replica does not publish it.</summary>
    Task<ReplicaLoad?> ScrapeLoadAsync(int port, TimeSpan timeout, CancellationToken ct);

    /// <summary>Model ids from <c>/v1/models</c> (OpenAI's list), or null when the replica does not answer one.</summary>
    Task<string[]?> ListModelsAsync(int port, TimeSpan timeout, CancellationToken ct) => Task.FromResult<string[]?>(null);
}
