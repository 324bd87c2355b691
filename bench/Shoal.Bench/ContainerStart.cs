using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Text;
using Docker.DotNet.Models;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Runtimes;
using Shoal.Agent.Runtimes.Docker;
using Shoal.Contracts;

namespace Shoal.Bench;

/// <summary>
/// Start to ready of one container: the agent's docker runtime (label lookup, digest check,
/// create with the full isolation spec, start, first healthy probe) against `docker run -d` of
/// the same image and the same probe, alternated in one run.
/// </summary>
internal static class ContainerStart
{
    internal const string Image = "shoal-bench/web:1";

    public static async Task RunAsync(int rounds)
    {
        Console.WriteLine($"## Container start to ready: agent docker runtime vs docker run ({rounds} rounds each, alternated)");
        using var client = DockerRuntime.CreateClient(null);
        var version = await DockerRuntime.ProbeAsync(client, TimeSpan.FromSeconds(10), CancellationToken.None)
            ?? throw new InvalidOperationException("no Docker engine answers");
        await ImportImageAsync(client);
        using var runtime = new DockerRuntime(DockerRuntime.CreateClient(null), new DockerRuntimeOptions
        {
            Network = DockerNetworkMode.Host,
            MemoryMiB = 4096,
            CpuCores = Environment.ProcessorCount,
            NodeId = () => "n-bench",
        }, NullLogger<DockerRuntime>.Instance);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };

        var agent = new List<double>();
        var cli = new List<double>();
        try
        {
            for (var i = -2; i < rounds; i++)
            {
                // Two warm-up rounds; then agent and docker run take turns going first.
                var agentFirst = i % 2 == 0;
                for (var k = 0; k < 2; k++)
                {
                    if (k == 0 == agentFirst)
                    {
                        var ms = await AgentStartAsync(runtime, http, i);
                        if (i >= 0) agent.Add(ms);
                    }
                    else
                    {
                        var ms = await DockerRunAsync(http);
                        if (i >= 0) cli.Add(ms);
                    }
                }
            }
        }
        finally
        {
            await Cli("rmi", "-f", Image);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"engine {version}, {Environment.ProcessorCount} cores"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"agent docker runtime: median {Pct(agent, 50):F0} ms, p99 {Pct(agent, 99):F0} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"docker run -d:        median {Pct(cli, 50):F0} ms, p99 {Pct(cli, 99):F0} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio (agent / docker run): median {Pct(agent, 50) / Pct(cli, 50):F2}x, p99 {Pct(agent, 99) / Pct(cli, 99):F2}x"));
    }

    private static async Task<double> AgentStartAsync(DockerRuntime runtime, HttpClient http, int round)
    {
        var assignment = new Assignment
        {
            ReplicaId = "bench-" + (round + 10).ToString(CultureInfo.InvariantCulture),
            Cluster = "bench",
            Image = Image,
            Gpu = "rtx-4090",
            GpuIndexes = [0],
        };
        var sw = Stopwatch.StartNew();
        var digest = await runtime.PrepareAsync(assignment, new Progress<double>(), CancellationToken.None);
        var instance = await runtime.StartAsync(assignment with { ImageDigest = digest }, CancellationToken.None);
        await WaitHealthyAsync(http, instance.HostPort);
        var ms = sw.Elapsed.TotalMilliseconds;
        await instance.StopAsync(TimeSpan.Zero, CancellationToken.None);
        await instance.DisposeAsync();
        return ms;
    }

    private static async Task<double> DockerRunAsync(HttpClient http)
    {
        var port = ProcessRuntime.FreeLoopbackPort();
        var sw = Stopwatch.StartNew();
        var id = (await Cli("run", "-d", "--network", "host", "-e", "PORT=" + port.ToString(CultureInfo.InvariantCulture), Image)).Trim();
        await WaitHealthyAsync(http, port);
        var ms = sw.Elapsed.TotalMilliseconds;
        await Cli("rm", "-f", id);
        return ms;
    }

    internal static async Task WaitHealthyAsync(HttpClient http, int port)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            try
            {
                using var response = await http.GetAsync($"http://127.0.0.1:{port}/health");
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(5);
        }
        throw new TimeoutException($"nothing healthy on port {port}");
    }

    private static async Task<string> Cli(params string[] args)
    {
        var info = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return output;
    }

    internal static async Task ImportImageAsync(Docker.DotNet.IDockerClient client)
    {
        using var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            await writer.WriteEntryAsync("/bin/busybox", "bin/busybox");
            foreach (var applet in (string[])["sh", "httpd"])
            {
                await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, "bin/" + applet) { LinkName = "busybox", Mode = (UnixFileMode)0x1ff });
            }
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "www/health") { Mode = (UnixFileMode)0x1a4, DataStream = new MemoryStream("ok\n"u8.ToArray()) });
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "serve")
            {
                Mode = (UnixFileMode)0x1ed,
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes("#!/bin/sh\nexec httpd -f -p 127.0.0.1:${PORT:-8000} -h /www\n")),
            });
        }
        tar.Position = 0;
        await client.Images.CreateImageAsync(
            new ImagesCreateParameters { FromSrc = "-", Repo = "shoal-bench/web", Tag = "1", Changes = ["ENTRYPOINT [\"/serve\"]"] },
            tar, new AuthConfig(), new Progress<JSONMessage>(), CancellationToken.None);
    }

    private static double Pct(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        var index = (int)Math.Ceiling(p / 100 * sorted.Count) - 1;
        return sorted[Math.Clamp(index, 0, sorted.Count - 1)];
    }
}
