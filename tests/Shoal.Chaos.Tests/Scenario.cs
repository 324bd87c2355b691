using System.Diagnostics;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// The common part of a chaos scenario on a started <see cref="ChaosStack"/>: the scenario clock,
/// the cluster as it was, one victim replica (with its node, agent and processes), an
/// <see cref="AttemptWatcher"/> and <see cref="SteadyLoad"/> already flowing (200 requests done),
/// and the moment of the fault once <see cref="MarkFault"/> is called. Times are ms on the clock.
/// </summary>
internal sealed class Scenario : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;

    private Scenario(ChaosStack stack, ITestOutputHelper output, ClusterStatusDto before, ReplicaDto victim, List<int> pids, Stopwatch clock)
    {
        Stack = stack;
        _output = output;
        Before = before;
        Victim = victim;
        VictimPids = pids;
        Clock = clock;
        Attempts = new AttemptWatcher(stack.EdgeAddress, stack.MetricsKey, clock);
        Load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock);
    }

    public ChaosStack Stack { get; }
    public Stopwatch Clock { get; }
    public ClusterStatusDto Before { get; }
    public ReplicaDto Victim { get; }
    public string VictimNode => Victim.Node!;
    public string VictimNodeName => Victim.NodeName!;
    public List<int> VictimPids { get; }
    public AttemptWatcher Attempts { get; }
    public SteadyLoad Load { get; }
    public double FaultAt { get; private set; }
    public DateTimeOffset FaultAtUtc { get; private set; }
    public double Now => Clock.Elapsed.TotalMilliseconds;
    public double SinceFault => Now - FaultAt;

    /// <summary>Picks the first replica as the victim, starts the watcher and the load, and waits for 200 requests (some to the victim).</summary>
    public static async Task<Scenario> StartAsync(ChaosStack stack, ITestOutputHelper output)
    {
        var clock = Stopwatch.StartNew();
        var before = await stack.StatusAsync();
        var victim = before.Replicas[0];
        var pids = stack.ReplicaProcesses().GetValueOrDefault(victim.Id) ?? [];
        Assert.NotEmpty(pids);
        var scenario = new Scenario(stack, output, before, victim, pids, clock);
        try
        {
            await scenario.Load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));
            Assert.Contains(scenario.Load.Outcomes, o => o.Replica == victim.Id);
        }
        catch
        {
            await scenario.DisposeAsync();
            throw;
        }
        return scenario;
    }

    public void MarkFault()
    {
        FaultAtUtc = DateTimeOffset.UtcNow;
        FaultAt = Now;
    }

    /// <summary>Waits until the victim's node shows <c>disconnected</c> (or offline); ms since the fault.</summary>
    public async Task<double> WaitForDisconnectAsync(TimeSpan timeout)
    {
        await Eventually.GetAsync(Stack.NodesAsync,
            n => n.Any(x => x.Id == VictimNode && x.State is NodeState.Disconnected or NodeState.Offline), timeout, "node disconnected");
        return SinceFault;
    }

    /// <summary>Waits until the victim's node is ready again; ms on the clock.</summary>
    public async Task<double> WaitForNodeReadyAsync(TimeSpan timeout)
    {
        await Eventually.GetAsync(Stack.NodesAsync, n => n.Any(x => x.Id == VictimNode && x.State == NodeState.Ready), timeout, "node ready again");
        return Now;
    }

    /// <summary>Waits until the cluster is whole again without the victim's node; returns the status and the replacement.</summary>
    public async Task<(ClusterStatusDto Status, ReplicaDto Replacement)> WaitForReplacementAsync(TimeSpan timeout)
    {
        var replaced = await Eventually.GetAsync(Stack.StatusAsync,
            s => s.Cluster.ReadyReplicas == 2 && s.Replicas.Length == 2 && s.Replicas.All(r => r.Node != VictimNode && r.State == ReplicaState.Ready),
            timeout, "replacement ready");
        var replacement = Assert.Single(replaced.Replicas, r => Before.Replicas.All(b => b.Id != r.Id));
        Assert.NotEqual(VictimNode, replacement.Node);
        return (replaced, replacement);
    }

    /// <summary>Waits until a request that started after <paramref name="afterMs"/> was served by <paramref name="replica"/>; its start.</summary>
    public async Task<double> WaitForServedAsync(string replica, double afterMs, TimeSpan timeout, string what)
    {
        await Eventually.UntilAsync(() => Load.Outcomes.Any(o => o.Replica == replica && o.StartMs > afterMs), timeout, what);
        return Load.Outcomes.Where(o => o.Replica == replica && o.StartMs > afterMs).Min(o => o.StartMs);
    }

    /// <summary>The cluster's events from a second before the fault, with ms since the fault.</summary>
    public async Task<ClusterEventDto[]> PrintEventsAsync()
    {
        var events = await Stack.EventsAsync();
        foreach (var e in events.Where(e => e.At >= FaultAtUtc.AddSeconds(-1)))
        {
            _output.WriteLine($"{(e.At - FaultAtUtc).TotalMilliseconds,8:0} ms  {e.Type,-10} {e.Replica,-14} {e.NodeName,-8} {e.Message}");
        }
        return events;
    }

    /// <summary>The slowest requests around the fault, for diagnosis: where the time went shows in their start and replica.</summary>
    public void PrintSlowest(IEnumerable<RequestOutcome> outcomes) => PrintSlowest(_output, outcomes, FaultAt);

    public static void PrintSlowest(ITestOutputHelper output, IEnumerable<RequestOutcome> outcomes, double faultAt)
    {
        foreach (var o in outcomes.OrderByDescending(o => o.EndMs - o.StartMs).Take(5))
        {
            output.WriteLine($"slow: start {o.StartMs - faultAt:0} ms after the fault, took {o.EndMs - o.StartMs:0} ms, {o.Status} from {o.Replica}");
        }
    }

    /// <summary>Asserts that no request failed, naming the first that did.</summary>
    public static void AssertNoneFailed(IReadOnlyCollection<RequestOutcome> outcomes)
    {
        var failed = outcomes.Where(o => o.Failed).ToList();
        Assert.True(failed.Count == 0, $"{failed.Count} of {outcomes.Count} requests failed, first: {failed.FirstOrDefault()}");
    }

    public static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{signal} {pid}") { UseShellExecute = false })!;
        kill.WaitForExit();
    }

    public static void KillNow(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            p.Kill(entireProcessTree: false);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // Already gone.
        }
    }

    public static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}") && !IsZombie(pid);

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
            return state is "Z" or "X";
        }
        catch (IOException)
        {
            return true;
        }
    }

    public static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
    }

    public async ValueTask DisposeAsync()
    {
        await Load.DisposeAsync();
        await Attempts.DisposeAsync();
    }
}
