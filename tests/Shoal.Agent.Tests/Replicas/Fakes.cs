using System.Collections.Concurrent;
using Shoal.Agent.Health;
using Shoal.Agent.Runtimes;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Replicas;

internal sealed class FakeRuntime : IReplicaRuntime
{
    private int _nextPort = 20000;

    public ConcurrentQueue<FakeInstance> Started { get; } = new();

    public string Name => "fake";

    public IReadOnlyCollection<string> Images => ["fake/app"];

    public bool CanRun(string image) => image == "fake/app";

    public string DescribeRejection(string image) => $"image {image} is not allowed by the fake runtime";

    public Task<IReplicaInstance> StartAsync(Assignment assignment, CancellationToken ct)
    {
        var instance = new FakeInstance(assignment.ReplicaId, Interlocked.Increment(ref _nextPort));
        Started.Enqueue(instance);
        return Task.FromResult<IReplicaInstance>(instance);
    }

    public FakeInstance Last(string replicaId) => Started.Last(i => i.ReplicaId == replicaId);

    public int Count(string replicaId) => Started.Count(i => i.ReplicaId == replicaId);
}

internal sealed class FakeInstance(string replicaId, int port) : IReplicaInstance
{
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string ReplicaId { get; } = replicaId;

    public int HostPort { get; } = port;

    public Task<int> Exited => _exited.Task;

    public bool StopRequested { get; private set; }

    public void Exit(int code) => _exited.TrySetResult(code);

    public Task StopAsync(TimeSpan grace, CancellationToken ct)
    {
        StopRequested = true;
        _exited.TrySetResult(143);
        return Task.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

internal sealed class FakeProbe : IReplicaProbe
{
    private int _probes;

    public volatile bool Healthy = true;

    public int Probes => Volatile.Read(ref _probes);

    public ReplicaLoad? Load { get; set; } = new() { Running = 2, Waiting = 5 };

    public Task<bool> ProbeAsync(int port, HealthCheckSpec spec, CancellationToken ct)
    {
        Interlocked.Increment(ref _probes);
        return Task.FromResult(Healthy);
    }

    public Task<ReplicaLoad?> ScrapeLoadAsync(int port, TimeSpan timeout, CancellationToken ct) => Task.FromResult(Load);

    public string[]? Models { get; set; } = ["fake-model"];

    public Task<string[]?> ListModelsAsync(int port, TimeSpan timeout, CancellationToken ct) => Task.FromResult(Models);
}

/// <summary>A runtime with a pull phase: pulls report progress, then succeed or fail as told.</summary>
internal sealed class PullingFakeRuntime : IReplicaRuntime
{
    private readonly FakeRuntime _inner = new();
    private int _pulls;

    public volatile string? PullError = "image pull failed: no such tag: fake/app:nosuchtag";

    public TaskCompletionSource PullGate { get; set; } = CompletedGate();

    public int Pulls => Volatile.Read(ref _pulls);

    public FakeRuntime Inner => _inner;

    public string Name => "pulling";

    public IReadOnlyCollection<string> Images => [];

    public bool PullsImages => true;

    public bool KeepsReplicasOnAgentExit => true;

    /// <summary>The keep sets of every orphan sweep, in order.</summary>
    public ConcurrentQueue<IReadOnlySet<string>> Sweeps { get; } = new();

    /// <summary>Sweeps wait on this (open by default).</summary>
    public TaskCompletionSource SweepGate { get; set; } = CompletedGate();

    public async Task RemoveOrphansAsync(IReadOnlySet<string> keep, CancellationToken ct)
    {
        Sweeps.Enqueue(keep);
        await SweepGate.Task;
    }

    public bool CanRun(string image) => true;

    public string DescribeRejection(string image) => "";

    public async Task<string?> PrepareAsync(Assignment assignment, IProgress<double> progress, CancellationToken ct)
    {
        Interlocked.Increment(ref _pulls);
        progress.Report(42);
        await PullGate.Task.WaitAsync(ct);
        if (PullError is { } error)
        {
            throw new ReplicaStartException(error);
        }
        return "sha256:" + new string('f', 64);
    }

    public Task<IReplicaInstance> StartAsync(Assignment assignment, CancellationToken ct) => _inner.StartAsync(assignment, ct);

    private static TaskCompletionSource CompletedGate()
    {
        var tcs = new TaskCompletionSource();
        tcs.SetResult();
        return tcs;
    }
}
