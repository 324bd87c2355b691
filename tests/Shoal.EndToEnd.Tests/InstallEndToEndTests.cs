using System.Diagnostics;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// <c>scripts/install.sh</c> as a user runs it: shoal on the PATH (a link in the bin dir), the native
/// client answering client commands and handing role commands to the full shoal it was installed
/// with. The install publishes twice in Release (ReadyToRun and Native AOT): 2–4 minutes on a
/// 2-core machine.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class InstallEndToEndTests(ITestOutputHelper output)
{
    private static readonly string s_script = Path.Combine(RepoRoot(), "scripts", "install.sh");

    [Fact]
    public async Task Install_puts_shoal_on_the_path_with_a_native_client_that_hands_roles_to_the_full_shoal()
    {
        using var dir = new TempDirectory("shoal-install");
        var prefix = dir.Combine("share", "shoal");
        var bin = dir.Combine("bin");
        var (code, text) = await RunAsync("bash", [s_script, "--prefix", prefix, "--bin-dir", bin], TimeSpan.FromMinutes(10));
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.Contains("Installed shoal", text, StringComparison.Ordinal);
        Assert.Contains($"{bin} is not on your PATH", text, StringComparison.Ordinal);

        var shoal = Path.Combine(bin, "shoal");
        Assert.Equal(Path.Combine(prefix, "shoal"), File.ResolveLinkTarget(shoal, returnFinalTarget: false)!.FullName);
        Assert.True(File.Exists(Path.Combine(prefix, "host", "shoal")));
        // The client is one native executable, not a .NET apphost beside its assemblies.
        Assert.False(File.Exists(Path.Combine(prefix, "shoal.dll")));

        // Found through the PATH, as the README's `shoal status demo` is.
        var path = new Dictionary<string, string> { ["PATH"] = $"{bin}:{Environment.GetEnvironmentVariable("PATH")}" };
        var (versionCode, version) = await RunAsync("shoal", ["--version"], TimeSpan.FromSeconds(30), path);
        Assert.Equal(0, versionCode);
        // The native client and the full shoal of one install are one build (the commit after the '+').
        var (_, host) = await RunAsync(Path.Combine(prefix, "host", "shoal"), ["--version"], TimeSpan.FromSeconds(30));
        Assert.Equal(host.Trim(), version.Trim());
        // The version the build here has (not its commit: this test's build may predate a later commit).
        var (_, built) = await RunAsync(ShoalProcess.ExecutablePath, ["--version"], TimeSpan.FromSeconds(30));
        Assert.Equal(built.Split('+')[0].Trim(), version.Split('+')[0].Trim());

        // A role command becomes the full shoal (same process: exec), and the native client talks to it.
        var port = FreePort.Next();
        var config = dir.Combine("config.json");
        await using var server = ShoalProcess.Start("installed server", ["server", "--listen", $"127.0.0.1:{port}", "--no-edge", "--data-dir", dir.Combine("data")],
            new Dictionary<string, string> { ["SHOAL_CONFIG"] = config }, executable: shoal);
        await Eventually.GetAsync(() => Task.FromResult(server.Output), o => o.Contains("shoal server: API", StringComparison.Ordinal) || server.HasExited, TimeSpan.FromSeconds(60), "server up");
        Assert.False(server.HasExited, server.Output);
        Assert.Equal(Path.Combine(prefix, "host", "shoal"), new FileInfo($"/proc/{server.Pid}/exe").ResolveLinkTarget(returnFinalTarget: false)!.FullName);

        var client = new Dictionary<string, string>
        {
            ["SHOAL_ADDR"] = $"http://127.0.0.1:{port}",
            ["SHOAL_API_KEY"] = File.ReadAllText(dir.Combine("data", "operator.key")).Trim(),
            ["SHOAL_CONFIG"] = config,
        };
        var (clustersCode, clusters) = await RunAsync(shoal, ["clusters"], TimeSpan.FromSeconds(30), client);
        Assert.True(clustersCode == 0, clusters);
        Assert.Contains("no clusters", clusters, StringComparison.Ordinal);
        var (statusCode, status) = await RunAsync(shoal, ["status", "nothing"], TimeSpan.FromSeconds(30), client);
        Assert.Equal(4, statusCode);
        Assert.Contains("nothing", status, StringComparison.Ordinal);

        // Help for a role comes from the full shoal, with its options.
        var (helpCode, help) = await RunAsync(shoal, ["server", "--help"], TimeSpan.FromSeconds(30));
        Assert.Equal(0, helpCode);
        Assert.Contains("--edge-listen", help, StringComparison.Ordinal);
        await server.StopAsync();
    }

    [Fact]
    public async Task Install_refuses_a_prefix_it_did_not_make_and_leaves_it_alone()
    {
        using var dir = new TempDirectory("shoal-install-refused");
        var prefix = dir.Combine("mine");
        Directory.CreateDirectory(prefix);
        File.WriteAllText(Path.Combine(prefix, "notes.txt"), "keep me");
        var (code, text) = await RunAsync("bash", [s_script, "--prefix", prefix, "--bin-dir", dir.Combine("bin")], TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains("was not made by this script", text, StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(prefix, "notes.txt")));
        Assert.False(File.Exists(dir.Combine("bin", "shoal")));

        var (root, rootText) = await RunAsync("bash", [s_script, "--prefix", "/", "--bin-dir", dir.Combine("bin")], TimeSpan.FromSeconds(60));
        Assert.Equal(2, root);
        Assert.Contains("shared directory", rootText, StringComparison.Ordinal);

        var (unknown, unknownText) = await RunAsync("bash", [s_script, "--prefx", prefix], TimeSpan.FromSeconds(60));
        Assert.Equal(2, unknown);
        Assert.Contains("unknown argument '--prefx'", unknownText, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, string[] args, TimeSpan timeout, IReadOnlyDictionary<string, string>? env = null)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        if (env is not null)
        {
            foreach (var (k, v) in env) info.Environment[k] = v;
        }
        // `shoal` by name is looked up in the PATH given to it, not this process's.
        if (env?.GetValueOrDefault("PATH") is { } path && !file.Contains('/', StringComparison.Ordinal))
        {
            info.FileName = path.Split(':').Select(d => Path.Combine(d, file)).First(File.Exists);
        }
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {timeout}");
        }
        return (process.ExitCode, await stdout + await stderr);
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Shoal.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root above " + AppContext.BaseDirectory);
    }
}
