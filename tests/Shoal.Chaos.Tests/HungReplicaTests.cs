using System.Globalization;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// A replica hangs: its simulator process alone gets SIGSTOP (alive, its port still accepting
/// connections, nothing answering), its agent goes on. Under steady non-streaming load no request
/// fails: the edge cuts attempts to it at the cluster's first-byte cap and retries them on the
/// other replica; the agent's health check finds it, it leaves routing, and the agent stops it
/// (SIGTERM, with a SIGCONT so a stopped process can act on it) and starts it again.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class HungReplicaTests(ITestOutputHelper output)
{
    /// <summary>The cluster's first-byte cap: shorter than the health check takes to find the hang, so the cap is what saves the requests first.</summary>
    private const int FirstByteTimeoutSeconds = 1;

    [Fact]
    public async Task A_replica_process_stopped_with_sigstop_fails_no_request_its_attempts_are_cut_at_the_first_byte_cap_and_it_is_restarted()
    {
        await using var stack = await ChaosStack.StartAsync(output, new ChaosStackOptions
        {
            FirstByteTimeoutSeconds = FirstByteTimeoutSeconds,
            // Found in 2 failed probes of 1 s each (about 3 s): slower than the cap, quicker than the default's 8 s.
            Health = new HealthCheckSpec { IntervalMs = 500, TimeoutMs = 1000, FailureThreshold = 2 },
        });
        List<int> stopped = [];
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);
            using var metrics = new HttpClient { BaseAddress = stack.EdgeAddress, Timeout = TimeSpan.FromSeconds(10) }.WithKey(stack.MetricsKey);
            // On a starved box a healthy replica's answer may take longer than the cap: counted from here.
            var cutsBefore = await CutsAsync(metrics, "first-byte-timeout");
            var victimErrorsBefore = await VictimErrorsAsync(metrics, s.Victim.Id);

            s.MarkFault();
            foreach (var pid in s.VictimPids)
            {
                Scenario.Signal(pid, "STOP");
                stopped.Add(pid);
            }
            // Signals arrive asynchronously: the process shows stopped (T) a moment later.
            foreach (var pid in s.VictimPids) await Eventually.UntilAsync(() => ProcessState(pid) == "T", TimeSpan.FromSeconds(5), $"process {pid} stopped");

            // The edge cuts attempts to it at the cap (more than one is in flight to it at the fault).
            await Eventually.GetAsync(() => CutsAsync(metrics, "first-byte-timeout"), n => n > cutsBefore, TimeSpan.FromSeconds(15), "an attempt cut at the first-byte cap");
            var firstCutMs = s.SinceFault;
            // And they were attempts to the hung replica: its error count grew.
            await Eventually.GetAsync(() => VictimErrorsAsync(metrics, s.Victim.Id), n => n > victimErrorsBefore, TimeSpan.FromSeconds(10), "failed attempts to the hung replica");
            await Eventually.GetAsync(stack.StatusAsync, st => st.Replicas.Any(r => r.Id == s.Victim.Id && !r.Healthy), TimeSpan.FromSeconds(20), "the hung replica unhealthy");
            var unhealthyMs = s.SinceFault;
            // Then the agent stops it (the stopped process gets its SIGTERM) and starts it again: same replica, one restart.
            var restarted = await Eventually.GetAsync(stack.StatusAsync,
                st => st.Replicas.Any(r => r.Id == s.Victim.Id && r.Restarts >= 1 && r.State == ReplicaState.Ready), TimeSpan.FromSeconds(40), "the hung replica restarted and ready");
            var readyMs = s.SinceFault;
            Assert.All(s.VictimPids, pid => Assert.False(Scenario.IsAlive(pid), $"the hung process {pid} is still there"));
            stopped.Clear();
            var servedAt = await s.WaitForServedAsync(s.Victim.Id, s.FaultAt + readyMs, TimeSpan.FromSeconds(20), "the restarted replica serving");
            await s.Load.WaitForMoreAsync(100, TimeSpan.FromSeconds(20));
            await s.Load.StopAsync();

            var events = await s.PrintEventsAsync();
            Assert.DoesNotContain(events, e => e.Type is ClusterEventTypes.Replaced or ClusterEventTypes.Failed);
            Assert.Equal(2, restarted.Replicas.Length);
            // Nothing left stopped: every replica process of the stack is running (or sleeping), none in state T.
            Assert.All(stack.ReplicaProcesses().Values.SelectMany(p => p), pid => Assert.NotEqual("T", ProcessState(pid)));

            var outcomes = s.Load.Outcomes.ToList();
            var afterFault = outcomes.Where(o => o.StartMs >= s.FaultAt).ToList();
            s.PrintSlowest(outcomes);
            var cuts = await CutsAsync(metrics, "first-byte-timeout");
            var leftRouting = await CutsAsync(metrics, "left-routing");
            Figures.Report(output, "hung-replica",
            [
                ("first_byte_cap_ms", FirstByteTimeoutSeconds * 1000),
                ("first_cut_after_fault_ms", firstCutMs),
                ("unhealthy_after_fault_ms", unhealthyMs),
                ("restarted_ready_after_fault_ms", readyMs),
                ("served_again_after_fault_ms", servedAt - s.FaultAt),
                ("attempts_cut_first_byte", cuts - cutsBefore),
                ("attempts_cut_first_byte_before_fault", cutsBefore),
                ("attempts_cut_left_routing", leftRouting),
                ("requests", outcomes.Count),
                ("requests_after_fault", afterFault.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("p50_ms_after_fault", Scenario.Percentile(afterFault.Select(o => o.EndMs - o.StartMs), 0.5)),
                ("p99_ms_after_fault", Scenario.Percentile(afterFault.Select(o => o.EndMs - o.StartMs), 0.99)),
                ("max_ms_after_fault", afterFault.Count == 0 ? 0 : afterFault.Max(o => o.EndMs - o.StartMs)),
            ]);
            Scenario.AssertNoneFailed(outcomes);
            // A request waited at most for its cut attempts, not for the agent's restart: MaxAttempts (3) caps at most.
            var slowest = afterFault.Max(o => o.EndMs - o.StartMs);
            Assert.True(slowest < readyMs, $"a request waited {slowest:0} ms, as long as the restart ({readyMs:0} ms)");
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
        finally
        {
            // A failed run leaves no stopped process behind (the stack's disposal kills the rest).
            foreach (var pid in stopped) Scenario.Signal(pid, "CONT");
        }
    }

    private static Task<double> CutsAsync(HttpClient metrics, string reason) =>
        MetricAsync(metrics, $"shoal_edge_attempts_cut_total{{cluster=\"{ChaosStack.Cluster}\",reason=\"{reason}\"}} ");

    private static Task<double> VictimErrorsAsync(HttpClient metrics, string replica) =>
        MetricAsync(metrics, $"shoal_edge_upstream_attempts_total{{cluster=\"{ChaosStack.Cluster}\",replica=\"{replica}\",outcome=\"error\"}} ");

    private static async Task<double> MetricAsync(HttpClient metrics, string prefix)
    {
        var text = await metrics.GetStringAsync("/metrics");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[prefix.Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>The process's state letter from <c>/proc/pid/stat</c> (T: stopped); "gone" when it is not there.</summary>
    private static string ProcessState(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
        }
        catch (IOException)
        {
            return "gone";
        }
    }
}
