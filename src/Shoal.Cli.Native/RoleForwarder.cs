using System.CommandLine;
using System.Runtime.InteropServices;
using Shoal.Cli.Commands;

namespace Shoal.Cli.Native;

/// <summary>
/// The role commands of the native client: each one replaces this process with the full
/// <c>shoal</c> (<see cref="HostPath"/>) running the same command line.
/// </summary>
internal static partial class RoleForwarder
{
    /// <summary>The roles and the one line help shows for each (the full <c>shoal</c> has their options).</summary>
    private static readonly (string Name, string Description)[] s_roles =
    [
        ("server", "Run the control plane: REST API, agent gateway, scheduler and reconciler, plus an edge"),
        ("edge", "Run a standalone edge: routes requests to replicas, takes tunnels from agents, gets its routes from the control plane"),
        ("agent", "Run the node agent: registers with the control plane and runs the replicas it is given"),
        ("dev", "Run server, edge, three simulated GPU nodes and a demo cluster on this machine"),
        ("sim", "Run the simulated, vLLM-compatible model server (the demo and test workload)"),
    ];

    /// <summary>Where the full <c>shoal</c> is: <c>SHOAL_HOST</c>, else <c>host/shoal</c> beside this executable (links resolved).</summary>
    public static string HostPath =>
        Environment.GetEnvironmentVariable("SHOAL_HOST") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Path.GetDirectoryName(Environment.ProcessPath) ?? ".", "host", "shoal");

    public static bool IsRole(string word) => Array.Exists(s_roles, r => r.Name == word);

    /// <summary>Commands that list the roles in help and, when a command line reaches one, run it in the full <c>shoal</c>.</summary>
    public static IEnumerable<ShoalSubcommand> Commands(string[] args) =>
        s_roles.Select(r => new ShoalSubcommand(r.Name, _ =>
        {
            var command = new Command(r.Name, r.Description) { TreatUnmatchedTokensAsErrors = false };
            command.SetAction(_ => Exec(args));
            return command;
        }));

    /// <summary>Replaces this process with the full <c>shoal</c> and <paramref name="args"/>; returns only when that fails (exit code 1).</summary>
    public static int Exec(string[] args)
    {
        var host = HostPath;
        if (!File.Exists(host))
        {
            Console.Error.WriteLine($"error: `shoal {args[0]}` runs in the full shoal, which is not at {host}");
            Console.Error.WriteLine("  install both with scripts/install.sh, or set SHOAL_HOST to the full shoal executable");
            return 1;
        }

        Console.Out.Flush();
        Console.Error.Flush();
        var argv = new nint[args.Length + 2];
        try
        {
            argv[0] = Marshal.StringToCoTaskMemUTF8(host);
            for (var i = 0; i < args.Length; i++) argv[i + 1] = Marshal.StringToCoTaskMemUTF8(args[i]);
            ExecV(argv[0], argv);
            Console.Error.WriteLine($"error: cannot run {host}: {Marshal.GetLastPInvokeErrorMessage()}");
            return 1;
        }
        finally
        {
            foreach (var p in argv) Marshal.FreeCoTaskMem(p);
        }
    }

    [LibraryImport("libc", EntryPoint = "execv", SetLastError = true)]
    private static partial int ExecV(nint path, nint[] argv);
}
