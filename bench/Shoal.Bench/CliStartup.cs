using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Microsoft.Extensions.Logging;
using Shoal.Agent;
using Shoal.Agent.Runtimes;
using Shoal.Agent.Runtimes.Docker;
using Shoal.Contracts;
using Shoal.ControlPlane;
using Shoal.Server;

namespace Shoal.Bench;

/// <summary>
/// How long the <c>shoal</c> CLI takes as a user sees it: client commands (<c>--version</c>,
/// <c>status NAME</c> against a running server) from process start to exit, beside the docker CLI
/// (<c>docker --version</c>, <c>docker ps</c>), alternated in one run; and a container deployed
/// through the CLI (<c>shoal deploy … --wait</c>) against <c>docker run -d</c> of the same image.
/// </summary>
internal static class CliStartup
{
    /// <summary>
    /// <paramref name="builds"/>: <c>label=path</c> of each <c>shoal</c> executable to measure (the
    /// Release build when none). Docker's rows need the docker CLI; <c>docker ps</c> an engine.
    /// </summary>
    public static async Task RunAsync(int runs, IReadOnlyList<string> builds)
    {
        var shoals = ParseBuilds(builds);
        Console.WriteLine($"## CLI start-up: process start to exit ({runs} runs each after 3 warm-ups, alternated)");
        var dir = Directory.CreateTempSubdirectory("shoal-bench-cli-");
        try
        {
            await using var server = await StartServerAsync(dir.FullName);
            using var http = BenchKeys.OperatorClient(server);
            (await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "bench", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            var env = ClientEnvironment(server, http);

            var targets = new List<(string Label, string File, string[] Args)>();
            foreach (var (label, path) in shoals)
            {
                targets.Add(($"{label}: shoal --version", path, ["--version"]));
                targets.Add(($"{label}: shoal status bench", path, ["status", "bench"]));
            }
            var docker = await TryRunAsync("docker", ["--version"], env) == 0;
            var engine = docker && await TryRunAsync("docker", ["ps"], env) == 0;
            if (docker) targets.Add(("docker --version", "docker", ["--version"]));
            if (engine) targets.Add(("docker ps", "docker", ["ps"]));

            var times = targets.ToDictionary(t => t.Label, _ => new List<double>());
            var loadBefore = LoadAverage();
            for (var i = -3; i < runs; i++)
            {
                // Each round starts with the next target, so none is always first after a pause.
                for (var k = 0; k < targets.Count; k++)
                {
                    var (label, file, args) = targets[(k + Math.Max(i, 0)) % targets.Count];
                    var sw = Stopwatch.StartNew();
                    var code = await TryRunAsync(file, args, env);
                    var ms = sw.Elapsed.TotalMilliseconds;
                    if (code != 0) throw new InvalidOperationException($"`{label}` exited with {code}");
                    if (i >= 0) times[label].Add(ms);
                }
            }

            Console.WriteLine(Fmt($"{Environment.ProcessorCount} cores; load average before: {loadBefore}, after: {LoadAverage()}; docker: {(engine ? "CLI and engine" : docker ? "CLI only" : "absent")}"));
            Console.WriteLine("| command | median | p99 | min |");
            Console.WriteLine("| --- | --- | --- | --- |");
            foreach (var (label, _, _) in targets)
            {
                var t = times[label];
                Console.WriteLine(Fmt($"| {label} | {Pct(t, 50):F0} ms | {Pct(t, 99):F0} ms | {t.Min():F0} ms |"));
            }
            if (docker)
            {
                foreach (var (label, _) in shoals)
                {
                    var version = times[$"{label}: shoal --version"];
                    var status = times[$"{label}: shoal status bench"];
                    var dockerVersion = times["docker --version"];
                    var line = Fmt($"{label}: shoal --version / docker --version {Pct(version, 50) / Pct(dockerVersion, 50):F1}x median");
                    if (engine) line += Fmt($"; shoal status / docker ps {Pct(status, 50) / Pct(times["docker ps"], 50):F1}x median");
                    Console.WriteLine(line);
                }
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Deploy to ready of one container: <c>shoal deploy NAME --image … --wait</c> (a process, against
    /// an in-process server and agent on the docker runtime with host networking) against
    /// <c>docker run -d</c> of the same image plus a probe of <c>/health</c> every 5 ms, alternated.
    /// </summary>
    public static async Task DeployAsync(int rounds, IReadOnlyList<string> builds)
    {
        var (label, shoal) = ParseBuilds(builds)[0];
        Console.WriteLine($"## Deploy to ready of a container: `shoal deploy --wait` ({label}) vs `docker run -d` + health probe ({rounds} rounds each, alternated)");
        var dir = Directory.CreateTempSubdirectory("shoal-bench-cli-deploy-");
        using var loggers = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Warning));
        using var stop = new CancellationTokenSource();
        Task? agent = null;
        try
        {
            using (var client = DockerRuntime.CreateClient(null))
            {
                _ = await DockerRuntime.ProbeAsync(client, TimeSpan.FromSeconds(10), CancellationToken.None) ?? throw new InvalidOperationException("no Docker engine answers");
                await ContainerStart.ImportImageAsync(client);
            }
            await using var server = await StartServerAsync(dir.FullName);
            using var http = BenchKeys.OperatorClient(server);
            var token = (await (await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest))
                .Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            agent = AgentHost.RunAsync(new AgentOptions
            {
                Server = server.ApiAddress.ToString(),
                Token = token,
                Name = "bench-node",
                DataDir = Path.Combine(dir.FullName, "agent"),
                SimulateGpus = "rtx-4090:1",
                Runtime = "docker",
                DockerNetwork = "host",
                AllowHostNetwork = true,
                StopGracePeriod = TimeSpan.FromSeconds(1),
            }, loggers, TimeProvider.System, stop.Token);
            while ((await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.All(n => n.State != NodeState.Ready)) await Task.Delay(20);
            var env = ClientEnvironment(server, http);
            using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };

            var viaShoal = new List<double>();
            var viaDocker = new List<double>();
            var serverSide = new List<double>();
            for (var i = -2; i < rounds; i++)
            {
                var shoalFirst = i % 2 == 0;
                for (var k = 0; k < 2; k++)
                {
                    if (k == 0 == shoalFirst)
                    {
                        var name = "d" + (i + 2).ToString(CultureInfo.InvariantCulture);
                        var sw = Stopwatch.StartNew();
                        var code = await TryRunAsync(shoal, ["deploy", name, "--image", ContainerStart.Image, "--gpu", "rtx-4090", "--wait", "--timeout", "60s"], env);
                        var ms = sw.Elapsed.TotalMilliseconds;
                        if (code != 0) throw new InvalidOperationException($"shoal deploy exited with {code}");
                        var replica = (await http.GetFromJsonAsync($"/v1/clusters/{name}/status", ShoalJsonContext.Default.ClusterStatusDto))!.Replicas.Single();
                        if (i >= 0)
                        {
                            viaShoal.Add(ms);
                            serverSide.Add((replica.ReadyAt!.Value - replica.CreatedAt).TotalMilliseconds);
                        }
                        (await http.DeleteAsync($"/v1/clusters/{name}")).EnsureSuccessStatusCode();
                        // The agent stops the container before the GPU is free for the next round (not timed).
                        while ((await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.Single().Replicas > 0) await Task.Delay(10);
                    }
                    else
                    {
                        var ms = await DockerRunAsync(probe);
                        if (i >= 0) viaDocker.Add(ms);
                    }
                }
            }
            Console.WriteLine(Fmt($"{Environment.ProcessorCount} cores; load average at the end: {LoadAverage()}"));
            Console.WriteLine("| | median | p99 |");
            Console.WriteLine("| --- | --- | --- |");
            Console.WriteLine(Fmt($"| `shoal deploy --wait` (process start to exit) | {Pct(viaShoal, 50):F0} ms | {Pct(viaShoal, 99):F0} ms |"));
            Console.WriteLine(Fmt($"| of which the server's create to ready | {Pct(serverSide, 50):F0} ms | {Pct(serverSide, 99):F0} ms |"));
            Console.WriteLine(Fmt($"| `docker run -d` + first healthy probe | {Pct(viaDocker, 50):F0} ms | {Pct(viaDocker, 99):F0} ms |"));
            Console.WriteLine(Fmt($"| ratio shoal / docker | {Pct(viaShoal, 50) / Pct(viaDocker, 50):F2}x | {Pct(viaShoal, 99) / Pct(viaDocker, 99):F2}x |"));
        }
        finally
        {
            await stop.CancelAsync();
            if (agent is not null)
            {
                try
                {
                    await agent;
                }
                catch (OperationCanceledException)
                {
                }
            }
            await TryRunAsync("docker", ["rmi", "-f", ContainerStart.Image], new Dictionary<string, string>());
            dir.Delete(recursive: true);
        }
    }

    private static async Task<double> DockerRunAsync(HttpClient probe)
    {
        var port = ProcessRuntime.FreeLoopbackPort();
        var name = "shoal-bench-run-" + port.ToString(CultureInfo.InvariantCulture);
        var sw = Stopwatch.StartNew();
        var code = await TryRunAsync("docker", ["run", "-d", "--name", name, "--network", "host", "-e", "PORT=" + port.ToString(CultureInfo.InvariantCulture), ContainerStart.Image], new Dictionary<string, string>());
        if (code != 0) throw new InvalidOperationException($"docker run exited with {code}");
        await ContainerStart.WaitHealthyAsync(probe, port);
        var ms = sw.Elapsed.TotalMilliseconds;
        await TryRunAsync("docker", ["rm", "-f", name], new Dictionary<string, string>());
        return ms;
    }

    private static List<(string Label, string Path)> ParseBuilds(IReadOnlyList<string> builds)
    {
        if (builds.Count == 0) return [("build", ShoalExecutable())];
        return [.. builds.Select(b => b.IndexOf('=', StringComparison.Ordinal) is var eq and > 0 ? (b[..eq], Path.GetFullPath(b[(eq + 1)..])) : (b, Path.GetFullPath(b)))];
    }

    private static async Task<ShoalServer> StartServerAsync(string dir) =>
        await ShoalServer.StartAsync(new ServerOptions
        {
            Listen = "127.0.0.1:0",
            EdgeListen = "127.0.0.1:0",
            DataDir = Path.Combine(dir, "server"),
            LogLevel = LogLevel.Warning,
            AllowLoopbackNodes = true,
            AllowSimulatedGpus = true,
        }, logging: l => l.SetMinimumLevel(LogLevel.Warning));

    /// <summary>What a user's shell would hold: the server's address and key, and a home of its own (no client config file).</summary>
    private static Dictionary<string, string> ClientEnvironment(ShoalServer server, HttpClient http) => new()
    {
        ["SHOAL_ADDR"] = server.ApiAddress.ToString().TrimEnd('/'),
        ["SHOAL_API_KEY"] = http.DefaultRequestHeaders.Authorization!.Parameter!,
        ["SHOAL_CONFIG"] = Path.Combine(Path.GetTempPath(), "shoal-bench-no-config.json"),
    };

    /// <summary>Runs a process with its output read and dropped; its exit code, or -1 when it cannot start.</summary>
    private static async Task<int> TryRunAsync(string file, string[] args, IReadOnlyDictionary<string, string> env)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in env) info.Environment[k] = v;
        try
        {
            using var p = Process.Start(info)!;
            var drain = Task.WhenAll(p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync());
            await p.WaitForExitAsync();
            await drain;
            return p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return -1;
        }
    }

    internal static string ShoalExecutable()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Shoal.slnx"))) d = d.Parent;
        var config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        return Path.Combine(d!.FullName, "src", "Shoal.Cli", "bin", config, "net10.0", "shoal");
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static double Pct(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
