using System.Threading.Channels;
using Shoal.Agent.Health;
using Shoal.Agent.Runtimes;
using Shoal.Contracts;

namespace Shoal.Agent.Replicas;

/// <summary>
/// The replicas this node runs. Converges to each assignment set it is given and outlives
/// connections: losing the server never stops a replica.
/// </summary>
public sealed partial class ReplicaManager : IAsyncDisposable
{
    private readonly IReadOnlyList<IReplicaRuntime> _runtimes;
    private readonly IReplicaProbe _probe;
    private readonly ReplicaManagerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ReplicaManager> _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ReplicaWorker> _workers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (ReplicaWorker Worker, Task Stopped)> _stopping = new(StringComparer.Ordinal);
    private readonly Channel<bool> _changes = Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
    });
    private readonly SemaphoreSlim _orphanSweep = new(1, 1);
    private Task _sweeping = Task.CompletedTask;
    private TaskCompletionSource _portsChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _assignmentsSeen;
    private long _appliedRevision;
    private string[] _reportedImages = [];

    public ReplicaManager(
        IReadOnlyList<IReplicaRuntime> runtimes,
        IReplicaProbe probe,
        ReplicaManagerOptions options,
        TimeProvider timeProvider,
        ILoggerFactory loggerFactory)
    {
        _runtimes = runtimes;
        _probe = probe;
        _options = options;
        _time = timeProvider;
        _logger = loggerFactory.CreateLogger<ReplicaManager>();
        _loggerFactory = loggerFactory;
    }

    /// <summary>Signals (coalesced) that some replica changed state; heartbeats go out at once.</summary>
    public ChannelReader<bool> Changes => _changes.Reader;

    /// <summary>The last assignment revision taken in.</summary>
    public long AppliedRevision => Interlocked.Read(ref _appliedRevision);

    /// <summary>Runtime names, for hello.</summary>
    public string[] RuntimeNames => [.. _runtimes.Select(r => r.Name)];

    /// <summary>Images the runtimes are known to run (the images on the node, for docker), for hello.</summary>
    public string[] Images
    {
        get
        {
            var images = CurrentImages();
            Volatile.Write(ref _reportedImages, images);
            return images;
        }
    }

    /// <summary>The images, when they changed since they were last read; null otherwise. For heartbeats.</summary>
    public string[]? TakeChangedImages()
    {
        var images = CurrentImages();
        var previous = Volatile.Read(ref _reportedImages);
        if (images.SequenceEqual(previous, StringComparer.Ordinal))
        {
            return null;
        }
        Volatile.Write(ref _reportedImages, images);
        return images;
    }

    private string[] CurrentImages() => [.. _runtimes.SelectMany(r => r.Images).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>
    /// Converges to <paramref name="assignments"/>: starts the missing, stops the unlisted, leaves
    /// the rest. Returns at once; starting and stopping go on in the background.
    /// </summary>
    public ConvergePlan Apply(long revision, IReadOnlyList<Assignment> assignments)
    {
        ConvergePlan plan;
        lock (_lock)
        {
            plan = Converger.Plan(_workers.Keys, assignments);
            foreach (var id in plan.ToStop)
            {
                var worker = _workers[id];
                _workers.Remove(id);
                var stopped = StopWorkerAsync(worker);
                _stopping[id] = (worker, stopped);
                LogStopping(id);
            }
            foreach (var assignment in plan.ToStart)
            {
                var runtime = _runtimes.FirstOrDefault(r => r.CanRun(assignment.Image));
                var rejection = runtime is not null ? null
                    : _runtimes.Count == 0 ? $"image {assignment.Image} cannot run: no runtime is enabled on this node"
                    : _runtimes.Count == 1 ? _runtimes[0].DescribeRejection(assignment.Image)
                    : string.Join("; ", _runtimes.Select(r => r.DescribeRejection(assignment.Image)));
                var worker = new ReplicaWorker(assignment, runtime, rejection, _probe, _options, _time, _loggerFactory.CreateLogger<ReplicaWorker>(), SignalChange);
                var previous = _stopping.TryGetValue(assignment.ReplicaId, out var s) ? s.Stopped : null;
                // A sweep that began before this worker existed would take what it starts (or adopts) for an orphan.
                if (!_sweeping.IsCompleted)
                {
                    previous = previous is null ? _sweeping : Task.WhenAll(previous, _sweeping);
                }
                _workers[assignment.ReplicaId] = worker;
                worker.Start(previous);
                LogStarting(assignment.ReplicaId, assignment.Cluster, assignment.Image);
            }
            Interlocked.Exchange(ref _appliedRevision, revision);
            _assignmentsSeen = true;
        }
        if (!plan.IsEmpty)
        {
            LogConverged(revision, plan.ToStart.Count, plan.ToStop.Count, plan.Unchanged.Count);
            SignalChange();
        }
        else
        {
            // The first set, even unchanged, ends the wait of tunnels asking for a port before it.
            WakePortWaiters();
        }
        if (_runtimes.Any(r => r.AdoptsReplicas))
        {
            _ = RemoveOrphansAsync();
        }
        return plan;
    }

    /// <summary>
    /// Removes what runtimes run for replicas this agent does not know (a container started by hand
    /// with Shoal's labels, one an earlier agent left behind): called every heartbeat interval, so
    /// an orphan does not hold its GPU until the next assignment change. Does nothing before the
    /// first assignment set (a restart without the server removes nothing), nor while a sweep runs.
    /// </summary>
    public Task SweepOrphansAsync()
    {
        lock (_lock)
        {
            if (!_assignmentsSeen) return Task.CompletedTask;
        }
        return _runtimes.Any(r => r.AdoptsReplicas) ? RemoveOrphansAsync(skipWhenBusy: true) : Task.CompletedTask;
    }

    // What an earlier agent left running for replicas no longer assigned here is removed; only
    // after an assignment set arrived, so a restart without the server removes nothing.
    private async Task RemoveOrphansAsync(bool skipWhenBusy = false)
    {
        if (skipWhenBusy)
        {
            if (!await _orphanSweep.WaitAsync(0)) return;
        }
        else
        {
            await _orphanSweep.WaitAsync();
        }
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            HashSet<string> keep;
            lock (_lock)
            {
                keep = new HashSet<string>(_workers.Keys.Concat(_stopping.Keys), StringComparer.Ordinal);
                // Workers created from now on wait for this sweep before they start anything.
                _sweeping = done.Task;
            }
            foreach (var runtime in _runtimes.Where(r => r.AdoptsReplicas))
            {
                await runtime.RemoveOrphansAsync(keep, CancellationToken.None);
            }
        }
        catch (Exception ex)
        {
            LogOrphanSweepFailed(ex);
        }
        finally
        {
            done.TrySetResult();
            _orphanSweep.Release();
        }
    }

    /// <summary>Streams the output of a replica this node runs.</summary>
    /// <exception cref="IOException">The replica is not on this node, or its runtime keeps no output.</exception>
    public Task StreamLogsAsync(string replicaId, bool follow, int? tail, Func<string, Task> write, CancellationToken ct)
    {
        ReplicaWorker? worker;
        lock (_lock)
        {
            worker = _workers.GetValueOrDefault(replicaId) ?? (_stopping.TryGetValue(replicaId, out var s) ? s.Worker : null);
        }
        if (worker?.Runtime is not { } runtime)
        {
            throw new IOException($"replica {replicaId} is not running on this node");
        }
        return runtime.StreamLogsAsync(replicaId, follow, tail, write, ct);
    }

    /// <summary>
    /// The agent is exiting: replicas of runtimes that outlive the agent (docker) are left running
    /// to be re-adopted; the others are stopped. Returns when that is done.
    /// </summary>
    public async Task ShutdownAsync()
    {
        Task[] pending;
        lock (_lock)
        {
            foreach (var (id, worker) in _workers)
            {
                var detach = worker.Runtime?.KeepsReplicasOnAgentExit == true;
                _stopping[id] = (worker, StopWorkerAsync(worker, detach));
            }
            _workers.Clear();
            pending = [.. _stopping.Values.Select(s => s.Stopped)];
        }
        await Task.WhenAll(pending);
    }

    /// <summary>What each replica is doing now, including ones being stopped.</summary>
    public ReplicaReport[] Snapshot()
    {
        lock (_lock)
        {
            return [.. _workers.Values.Select(w => w.Report), .. _stopping.Values.Where(s => !_workers.ContainsKey(s.Worker.ReplicaId)).Select(s => s.Worker.Report)];
        }
    }

    /// <summary>True when a replica this agent runs listens on <paramref name="port"/>; tunnels open only to those.</summary>
    public bool IsReplicaPort(int port)
    {
        lock (_lock)
        {
            foreach (var w in _workers.Values)
            {
                if (w.Report.HostPort == port) return true;
            }
            return false;
        }
    }

    /// <summary>How long a tunnel asking for a port no replica has yet waits while the agent is still settling.</summary>
    public static readonly TimeSpan SettleWait = TimeSpan.FromSeconds(3);

    /// <summary>
    /// True when a replica this agent runs listens on <paramref name="port"/>. Right after the agent
    /// starts, the edges' route tables still list the replicas it is about to re-adopt, and their
    /// tunnels ask for those ports before the assignment set has arrived or the instances are
    /// adopted: while the agent is settling (no assignment set yet, or a replica still pulling or
    /// starting without a port) an unknown port is waited for, up to <see cref="SettleWait"/>.
    /// </summary>
    public async ValueTask<bool> WaitForReplicaPortAsync(int port, CancellationToken ct)
    {
        var start = _time.GetTimestamp();
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (IsReplicaPort(port)) return true;
                var settling = !_assignmentsSeen || _workers.Values.Any(w => w.Report is { State: ReplicaState.Assigned or ReplicaState.Pulling } or { State: ReplicaState.Starting, HostPort: null });
                if (!settling) return false;
                changed = _portsChanged.Task;
            }
            var left = SettleWait - _time.GetElapsedTime(start);
            if (left <= TimeSpan.Zero) return false;
            try
            {
                await changed.WaitAsync(left, _time, ct);
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
    }

    private void WakePortWaiters()
    {
        TaskCompletionSource fired;
        lock (_lock)
        {
            fired = _portsChanged;
            _portsChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        fired.TrySetResult();
    }

    /// <summary>Stops every replica and waits for them to be gone.</summary>
    public async Task StopAllAsync()
    {
        Task[] pending;
        lock (_lock)
        {
            foreach (var (id, worker) in _workers)
            {
                _stopping[id] = (worker, StopWorkerAsync(worker));
            }
            _workers.Clear();
            pending = [.. _stopping.Values.Select(s => s.Stopped)];
        }
        await Task.WhenAll(pending);
    }

    public async ValueTask DisposeAsync() => await StopAllAsync();

    private async Task StopWorkerAsync(ReplicaWorker worker, bool detach = false)
    {
        await Task.Yield();
        await worker.StopAsync(detach);
        lock (_lock)
        {
            if (_stopping.TryGetValue(worker.ReplicaId, out var s) && ReferenceEquals(s.Worker, worker))
            {
                _stopping.Remove(worker.ReplicaId);
            }
        }
        if (!detach && worker.Runtime?.AdoptsReplicas == true)
        {
            // Stopped before it had adopted or started its container (say, while pulling): the
            // container, if any, is now an orphan of this node.
            _ = RemoveOrphansAsync();
        }
        SignalChange();
    }

    private void SignalChange()
    {
        _changes.Writer.TryWrite(true);
        WakePortWaiters();
    }
}
