using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Health;
using Shoal.Agent.Replicas;
using Shoal.Agent.Runtimes;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Agent.Tests.Runtimes;

public sealed class ProcessRuntimeTests : IDisposable
{
    internal const string PythonImage = "test/python-http";
    private readonly TempDirectory _dir = new("shoal-agent");
    private readonly HttpClient _http = HttpReplicaProbe.CreateClient();

    public void Dispose()
    {
        _http.Dispose();
        _dir.Dispose();
    }

    /// <summary>A web root holding <c>health</c> and <c>metrics</c>, and the command line that serves it on $PORT.</summary>
    internal static string PythonServerCommand(string root)
    {
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "health"), "ok\n");
        File.WriteAllText(Path.Combine(root, "metrics"), "vllm:num_requests_running{model_name=\"m\"} 1\nvllm:num_requests_waiting{model_name=\"m\"} 4\n");
        return $"python3 -m http.server --bind 127.0.0.1 --directory {CommandLine.Quote(root)} $PORT";
    }

    private ProcessRuntime Runtime(bool enabled = true, bool keep = false) => new(
        new ProcessRuntimeOptions
        {
            Enabled = enabled,
            KeepReplicasOnExit = keep,
            Images = new Dictionary<string, string> { [PythonImage] = PythonServerCommand(_dir.Combine("www")) },
            SimCommand = "shoal sim",
            ReplicasDir = _dir.Combine("replicas"),
        },
        TimeProvider.System,
        NullLogger<ProcessRuntime>.Instance);

    private static Assignment Python(string id) => new()
    {
        ReplicaId = id,
        Cluster = "web",
        Image = PythonImage,
        Gpu = "rtx-4090",
        GpuIndexes = [0, 1],
        Env = new() { ["GREETING"] = "hi" },
        Health = new HealthCheckSpec { Path = "/health", IntervalMs = 200, TimeoutMs = 1000 },
    };

    [Fact]
    public void Allow_list_decides_what_runs()
    {
        var runtime = Runtime();

        Assert.True(runtime.CanRun(PythonImage));
        Assert.True(runtime.CanRun("shoal/sim"));
        Assert.False(runtime.CanRun("docker.io/evil/miner"));
        Assert.Equal("image docker.io/evil/miner is not allowed by the process runtime on this node", runtime.DescribeRejection("docker.io/evil/miner"));
        Assert.Contains(PythonImage, runtime.Images);
        Assert.False(Runtime(enabled: false).CanRun("shoal/sim"));
        Assert.Empty(Runtime(enabled: false).Images);
    }

    [Fact]
    public async Task Disallowed_image_is_a_permanent_start_failure()
    {
        var ex = await Assert.ThrowsAsync<ReplicaStartException>(() => Runtime().StartAsync(Python("r") with { Image = "evil/miner" }, CancellationToken.None));

        Assert.True(ex.Permanent);
        Assert.Equal("image evil/miner is not allowed by the process runtime on this node", ex.Message);
    }

    [Theory]
    [InlineData("PYTHONWARNINGS", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("BROWSER", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("LD_PRELOAD", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("PATH", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("DOTNET_STARTUP_HOOKS", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("NODE_OPTIONS", "changes how the loader, an interpreter or a shell behaves")]
    [InlineData("http_proxy", "only upper-case letters, digits and '_' are allowed")]
    public async Task An_env_name_that_changes_the_interpreter_is_refused_before_anything_runs(string name, string why)
    {
        var ex = await Assert.ThrowsAsync<ReplicaStartException>(() =>
            Runtime().StartAsync(Python("inj-1") with { Env = new() { [name] = "x", ["GREETING"] = "hi" } }, CancellationToken.None));

        Assert.True(ex.Permanent);
        Assert.Contains($"env '{name}' is not allowed for image {PythonImage}", ex.Message, StringComparison.Ordinal);
        Assert.Contains(why, ex.Message, StringComparison.Ordinal);
        Assert.Contains($"shoal agent --allow-env {name}", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.Combine("replicas", "inj-1.log")));
    }

    [Fact]
    public async Task An_arg_naming_a_response_file_is_refused()
    {
        var ex = await Assert.ThrowsAsync<ReplicaStartException>(() =>
            Runtime().StartAsync(Python("inj-2") with { Args = ["ok", "@/var/lib/shoal/agent/node.json"] }, CancellationToken.None));

        Assert.True(ex.Permanent);
        Assert.Contains("arg '@/var/lib/shoal/agent/node.json' is not allowed", ex.Message, StringComparison.Ordinal);
        Assert.Contains("response file", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_name_the_operator_allowed_reaches_the_process()
    {
        var runtime = new ProcessRuntime(
            new ProcessRuntimeOptions
            {
                Enabled = true,
                Images = new Dictionary<string, string> { ["test/env"] = "python3 -c \"import os; print('UNBUF=' + os.environ['PYTHONUNBUFFERED'])\"" },
                AllowedEnv = new HashSet<string>(StringComparer.Ordinal) { "PYTHONUNBUFFERED" },
                ReplicasDir = _dir.Combine("replicas"),
            },
            TimeProvider.System,
            NullLogger<ProcessRuntime>.Instance);

        Assert.Null(runtime.Refusal(Python("a-1") with { Image = "test/env", Env = new() { ["PYTHONUNBUFFERED"] = "1" } }));
        Assert.NotNull(runtime.Refusal(Python("a-1") with { Image = "test/env", Env = new() { ["PYTHONSTARTUP"] = "/tmp/x.py" } }));
        await using var instance = await runtime.StartAsync(Python("a-1") with { Image = "test/env", Env = new() { ["PYTHONUNBUFFERED"] = "1" } }, CancellationToken.None);
        Assert.Equal(0, await instance.Exited.WaitAsync(TimeSpan.FromSeconds(20)));
        var logPath = _dir.Combine("replicas", "a-1.log");
        await Poll.UntilAsync(() => File.ReadAllText(logPath).Contains("UNBUF=1", StringComparison.Ordinal), "the allowed variable in the log");
    }

    [Fact]
    public async Task An_exit_is_reported_with_what_the_process_wrote_last_since_its_start()
    {
        var runtime = new ProcessRuntime(
            new ProcessRuntimeOptions
            {
                Enabled = true,
                Images = new Dictionary<string, string> { ["test/crash"] = "python3 -c \"import sys; print('loading weights', flush=True); print('fatal: no [weights]', file=sys.stderr); sys.exit(3)\"" },
                ReplicasDir = _dir.Combine("replicas"),
            },
            TimeProvider.System,
            NullLogger<ProcessRuntime>.Instance);

        // Two runs: the second's reason shows only its own output.
        for (var run = 0; run < 2; run++)
        {
            await using var instance = await runtime.StartAsync(Python("crash-1") with { Image = "test/crash" }, CancellationToken.None);
            Assert.Equal(3, await instance.Exited.WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.Equal("exited with code 3; last output: [loading weights | fatal: no (weights)]", instance.ExitReason);
        }
    }

    [Fact]
    public void Replica_environment_carries_port_gpus_and_identity()
    {
        var env = ProcessRuntime.ReplicaEnvironment(Python("r-1") with { Env = new() { ["PORT"] = "1", ["X"] = "y" } }, 4321);

        Assert.Equal("4321", env["PORT"]);
        Assert.Equal("0,1", env["CUDA_VISIBLE_DEVICES"]);
        Assert.Equal("rtx-4090", env["SHOAL_GPU_TYPE"]);
        Assert.Equal("r-1", env["SHOAL_REPLICA_ID"]);
        Assert.Equal("web", env["SHOAL_CLUSTER"]);
        Assert.Equal("y", env["X"]);
    }

    [Fact]
    public async Task Child_gets_its_environment_and_output_goes_to_the_log()
    {
        var runtime = new ProcessRuntime(
            new ProcessRuntimeOptions
            {
                Enabled = true,
                Images = new Dictionary<string, string> { ["test/env"] = "python3 -c \"import os; print('PORT=' + os.environ['PORT'], 'CUDA=' + os.environ['CUDA_VISIBLE_DEVICES'], 'G=' + os.environ['GREETING'], 'TOKEN=' + os.environ.get('SHOAL_TOKEN', 'none'), 'ARGS=' + ' '.join(__import__('sys').argv[1:]))\"" },
                ReplicasDir = _dir.Combine("replicas"),
            },
            TimeProvider.System,
            NullLogger<ProcessRuntime>.Instance);

        // The agent's own token (shoal agent reads $SHOAL_TOKEN) is not handed down.
        Environment.SetEnvironmentVariable("SHOAL_TOKEN", "shoal_pt_secret");
        await using var instance = await runtime.StartAsync(Python("env-1") with { Image = "test/env", Args = ["$SHOAL_CLUSTER", "-c"] }, CancellationToken.None);
        var code = await instance.Exited.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(0, code);
        var logPath = _dir.Combine("replicas", "env-1.log");
        await Poll.UntilAsync(() => File.Exists(logPath) && File.ReadAllText(logPath).Contains("ARGS=", StringComparison.Ordinal), "the log");
        var log = File.ReadAllText(logPath);
        // The cluster's args come after `--`: operands, never options of the operator's command.
        Assert.Contains($"PORT={instance.HostPort} CUDA=0,1 G=hi TOKEN=none ARGS=-- web -c", log, StringComparison.Ordinal);
        Assert.Equal(PrivateFiles.FileMode, File.GetUnixFileMode(logPath));
        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(_dir.Combine("replicas")));
    }

    [Fact]
    public async Task Real_process_becomes_ready_restarts_after_a_crash_and_stops()
    {
        await using var manager = new ReplicaManager(
            [Runtime()],
            new HttpReplicaProbe(_http, TimeProvider.System),
            new ReplicaManagerOptions { StopGracePeriod = TimeSpan.FromSeconds(5) },
            TimeProvider.System,
            NullLoggerFactory.Instance);
        ReplicaReport? Report() => manager.Snapshot().FirstOrDefault(r => r.ReplicaId == "py-1");

        manager.Apply(1, [Python("py-1")]);

        var ready = await Poll.UntilAsync(() => Report() is { State: ReplicaState.Ready } r ? r : null, "ready", 20_000);
        Assert.True(ready.Healthy);
        Assert.NotNull(ready.HostPort);
        Assert.NotNull(ready.ReadyAt);
        Assert.True(ready.ReadyAt >= ready.StartedAt);
        using (var response = await _http.GetAsync(new Uri($"http://127.0.0.1:{ready.HostPort}/health")))
        {
            Assert.True(response.IsSuccessStatusCode);
        }
        var loaded = await Poll.UntilAsync(() => Report()?.Load, "load from /metrics");
        Assert.Equal(4, loaded.Waiting);
        Assert.Equal(1, loaded.Running);

        // Kill the process behind the agent's back: it must be seen as failed, then restarted.
        var pid = FindListener(ready.HostPort!.Value);
        Process.GetProcessById(pid).Kill();
        await Poll.UntilAsync(() => Report() is { Restarts: 1, State: ReplicaState.Ready }, "restart after the crash", 20_000);
        var restarted = Report()!;
        Assert.NotNull(restarted.ExitCode);
        Assert.NotEqual(pid, FindListener(restarted.HostPort!.Value));

        var pid2 = FindListener(restarted.HostPort!.Value);
        manager.Apply(2, []);
        await Poll.UntilAsync(() => Report() is null, "stopped", 20_000);
        Assert.True(HasExited(pid2));
        Assert.True(File.Exists(_dir.Combine("replicas", "py-1.log")));
    }

    [Fact]
    public async Task Stop_kills_a_process_that_ignores_sigterm()
    {
        var runtime = new ProcessRuntime(
            new ProcessRuntimeOptions
            {
                Enabled = true,
                Images = new Dictionary<string, string> { ["test/stubborn"] = "python3 -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)\"" },
                ReplicasDir = _dir.Combine("replicas"),
            },
            TimeProvider.System,
            NullLogger<ProcessRuntime>.Instance);
        var logPath = _dir.Combine("replicas", "s-1.log");

        await using var instance = (ProcessReplicaInstance)await runtime.StartAsync(Python("s-1") with { Image = "test/stubborn" }, CancellationToken.None);
        await Poll.UntilAsync(() => File.Exists(logPath) && File.ReadAllText(logPath).Contains("up", StringComparison.Ordinal), "the process to ignore SIGTERM");
        await instance.StopAsync(TimeSpan.FromMilliseconds(300), CancellationToken.None);

        Assert.True(instance.Exited.IsCompleted);
        Assert.True(HasExited(instance.ProcessId));
    }

    [Fact]
    public async Task Stop_continues_a_stopped_process_so_it_acts_on_sigterm_within_the_grace()
    {
        var runtime = new ProcessRuntime(
            new ProcessRuntimeOptions
            {
                Enabled = true,
                Images = new Dictionary<string, string> { ["test/graceful"] = "python3 -c \"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: (print('term', flush=True), sys.exit(7))); print('up', flush=True); time.sleep(600)\"" },
                ReplicasDir = _dir.Combine("replicas"),
            },
            TimeProvider.System,
            NullLogger<ProcessRuntime>.Instance);
        var logPath = _dir.Combine("replicas", "g-1.log");

        await using var instance = (ProcessReplicaInstance)await runtime.StartAsync(Python("g-1") with { Image = "test/graceful" }, CancellationToken.None);
        await Poll.UntilAsync(() => File.Exists(logPath) && File.ReadAllText(logPath).Contains("up", StringComparison.Ordinal), "the process up");
        // Hung like a SIGSTOPped replica: without a SIGCONT it would sit on the SIGTERM until the grace ends in a kill.
        using (var stop = Process.Start(new ProcessStartInfo("kill", $"-STOP {instance.ProcessId}") { UseShellExecute = false })!) await stop.WaitForExitAsync();
        await instance.StopAsync(TimeSpan.FromMinutes(2), CancellationToken.None);

        Assert.Equal(7, await instance.Exited);
        await Poll.UntilAsync(() => File.ReadAllText(logPath).Contains("term", StringComparison.Ordinal), "the SIGTERM handler's line");
    }

    [Fact]
    public async Task A_replica_left_by_an_earlier_agent_is_re_adopted_as_it_is_and_one_no_longer_assigned_is_stopped()
    {
        // The first agent starts two replicas and goes away leaving them running.
        var first = Runtime(keep: true);
        var kept = await first.StartAsync(Python("keep-1"), CancellationToken.None);
        var orphan = await first.StartAsync(Python("gone-1"), CancellationToken.None);
        var (keptPid, keptPort) = (((ProcessReplicaInstance)kept).ProcessId, kept.HostPort);
        var orphanPid = ((ProcessReplicaInstance)orphan).ProcessId;
        await kept.DisposeAsync();
        await orphan.DisposeAsync();
        Assert.False(HasExited(keptPid));
        Assert.False(HasExited(orphanPid));

        // The next agent is assigned one of them: the same process on the same port, not a new one.
        var second = Runtime();
        await using var adopted = await second.StartAsync(Python("keep-1"), CancellationToken.None);
        var instance = Assert.IsType<AdoptedReplicaInstance>(adopted);
        Assert.Equal(keptPid, instance.ProcessId);
        Assert.Equal(keptPort, adopted.HostPort);
        var probe = new HttpReplicaProbe(_http, TimeProvider.System);
        var spec = new HealthCheckSpec { Path = "/health", TimeoutMs = 1000 };
        var healthy = false;
        for (var i = 0; i < 100 && !healthy; i++)
        {
            healthy = await probe.ProbeAsync(keptPort, spec, CancellationToken.None);
            if (!healthy) await Task.Delay(100);
        }
        Assert.True(healthy, "the adopted replica answers its health check");

        // The other is no longer assigned: stopped.
        await second.RemoveOrphansAsync(new HashSet<string>(["keep-1"]), CancellationToken.None);
        Assert.True(HasExited(orphanPid));
        Assert.False(File.Exists(_dir.Combine("replicas", "gone-1.process")));

        // The adopted one stops like any other, and its end is seen.
        await adopted.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        await adopted.Exited.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(HasExited(keptPid));
        Assert.False(File.Exists(_dir.Combine("replicas", "keep-1.process")));
    }

    [Fact]
    public async Task An_orphan_process_that_appears_after_the_assignment_set_is_stopped_by_the_next_sweep_without_any_assignment_change()
    {
        await using var manager = new ReplicaManager(
            [Runtime()],
            new HttpReplicaProbe(_http, TimeProvider.System),
            new ReplicaManagerOptions { StopGracePeriod = TimeSpan.FromSeconds(5) },
            TimeProvider.System,
            NullLoggerFactory.Instance);
        manager.Apply(1, [Python("mine-1")]);
        await Poll.UntilAsync(() => manager.Snapshot().Any(r => r is { ReplicaId: "mine-1", State: ReplicaState.Ready }), "mine-1 ready", 20_000);
        var minePort = manager.Snapshot().Single().HostPort!.Value;

        // A replica process of this node's runtime that this agent was never given (left by another agent on the same data dir).
        var other = Runtime(keep: true);
        var stray = await other.StartAsync(Python("stray-1"), CancellationToken.None);
        var strayPid = ((ProcessReplicaInstance)stray).ProcessId;
        await stray.DisposeAsync();
        Assert.False(HasExited(strayPid));

        // The heartbeat's sweep: no new assignment set.
        await manager.SweepOrphansAsync();

        Assert.True(HasExited(strayPid));
        Assert.False(File.Exists(_dir.Combine("replicas", "stray-1.process")));
        Assert.Equal(1, manager.AppliedRevision);
        Assert.False(HasExited(FindListener(minePort)));
        Assert.Equal(ReplicaState.Ready, manager.Snapshot().Single().State);
    }

    [Fact]
    public async Task A_left_replica_of_another_generation_is_stopped_and_a_new_one_started()
    {
        var first = Runtime(keep: true);
        var old = await first.StartAsync(Python("gen-1"), CancellationToken.None);
        var oldPid = ((ProcessReplicaInstance)old).ProcessId;
        await old.DisposeAsync();

        await using var fresh = await Runtime().StartAsync(Python("gen-1") with { Generation = 2 }, CancellationToken.None);
        var instance = Assert.IsType<ProcessReplicaInstance>(fresh);
        Assert.NotEqual(oldPid, instance.ProcessId);
        await Poll.UntilAsync(() => HasExited(oldPid), "the old generation's process to stop");
        await fresh.StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
    }

    [Fact]
    public async Task Without_keep_a_replica_stops_with_its_agent()
    {
        var instance = await Runtime().StartAsync(Python("plain-1"), CancellationToken.None);
        var pid = ((ProcessReplicaInstance)instance).ProcessId;
        await instance.DisposeAsync();
        await Poll.UntilAsync(() => HasExited(pid), "the replica to stop with its agent");
    }

    private static bool HasExited(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return p.HasExited;
        }
        catch (ArgumentException)
        {
            return true;
        }
    }

    // The pid listening on a loopback port, from /proc (the test runs on Linux).
    private static int FindListener(int port)
    {
        var hex = port.ToString("X4", System.Globalization.CultureInfo.InvariantCulture);
        var inode = File.ReadAllLines("/proc/net/tcp").Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f[1].EndsWith(":" + hex, StringComparison.Ordinal) && f[3] == "0A")
            .Select(f => f[9]).First();
        foreach (var dir in Directory.GetDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)))
        {
            try
            {
                foreach (var fd in Directory.GetFiles(Path.Combine(dir, "fd")))
                {
                    if (new FileInfo(fd).LinkTarget == $"socket:[{inode}]")
                    {
                        return int.Parse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
        throw new InvalidOperationException($"no process listens on port {port}");
    }
}
