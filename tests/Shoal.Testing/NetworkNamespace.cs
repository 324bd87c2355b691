using System.Diagnostics;
using System.Globalization;

namespace Shoal.Testing;

/// <summary>
/// A network namespace the test creates, joined to the host by one veth pair on a private /30:
/// the host side gets <see cref="HostAddress"/>, the namespace side <see cref="InnerAddress"/>, and the
/// namespace has no other route out. Needs root (CI runs as root). Deleted on dispose, with any
/// process still inside it.
/// </summary>
public sealed class NetworkNamespace : IDisposable
{
    private static readonly HashSet<(int, int)> s_taken = [];
    private bool _cut;

    private NetworkNamespace(string name, string hostLink, string innerLink, string hostAddress, string innerAddress)
    {
        Name = name;
        HostLink = hostLink;
        InnerLink = innerLink;
        HostAddress = hostAddress;
        InnerAddress = innerAddress;
    }

    public string Name { get; }
    public string HostLink { get; }
    public string InnerLink { get; }
    public string HostAddress { get; }
    public string InnerAddress { get; }

    public static NetworkNamespace Create()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            throw new InvalidOperationException("network namespace tests need Linux and root (scripts/test.sh runs them as root in CI)");
        }
        var id = Random.Shared.Next(0x100000, 0xFFFFFF).ToString("x6", CultureInfo.InvariantCulture);
        int subnet, octet;
        lock (s_taken)
        {
            // Distinct subnets within this process (a chaos stack makes several namespaces at once).
            do
            {
                subnet = Random.Shared.Next(0, 64) * 4;
                octet = Random.Shared.Next(1, 255);
            }
            while (!s_taken.Add((octet, subnet)));
        }
        var ns = new NetworkNamespace($"shoal-{id}", $"shh{id}", $"shn{id}", $"10.213.{octet}.{subnet + 1}", $"10.213.{octet}.{subnet + 2}");
        try
        {
            Ip($"netns add {ns.Name}");
            Ip($"link add {ns.HostLink} type veth peer name shn{id} netns {ns.Name}");
            Ip($"addr add {ns.HostAddress}/30 dev {ns.HostLink}");
            Ip($"link set {ns.HostLink} up");
            Ip($"-n {ns.Name} addr add {ns.InnerAddress}/30 dev shn{id}");
            Ip($"-n {ns.Name} link set shn{id} up");
            Ip($"-n {ns.Name} link set lo up");
        }
        catch
        {
            ns.Dispose();
            throw;
        }
        return ns;
    }

    /// <summary>
    /// Lets the namespace reach <paramref name="address"/>, a host address outside its /30 (such as
    /// another namespace's <see cref="HostAddress"/>, where a server listens for several namespaces):
    /// a host route through the veth, no default route.
    /// </summary>
    public void RouteTo(string address) => Ip($"-n {Name} route add {address}/32 via {HostAddress}");

    /// <summary>
    /// Cuts the link silently: every packet crossing the veth is dropped, both ways (iptables in the
    /// namespace and on the host, on input, so senders see no error: their packets just vanish).
    /// Sockets stay open, as when a cable is pulled or a router dies. The namespace's own loopback
    /// still works. <see cref="Restore"/> undoes it.
    /// </summary>
    public void Cut()
    {
        if (_cut) return;
        RunChecked("ip", $"netns exec {Name} iptables -w -I INPUT -i {InnerLink} -j DROP");
        RunChecked("iptables", $"-w -I INPUT -i {HostLink} -j DROP");
        _cut = true;
    }

    /// <summary>Undoes <see cref="Cut"/>: packets flow again (queued retransmissions get through).</summary>
    public void Restore()
    {
        if (!_cut) return;
        RunChecked("iptables", $"-w -D INPUT -i {HostLink} -j DROP");
        RunChecked("ip", $"netns exec {Name} iptables -w -D INPUT -i {InnerLink} -j DROP");
        _cut = false;
    }

    /// <summary>PIDs of processes running in the namespace.</summary>
    public IReadOnlyList<int> Pids()
    {
        var (code, output) = Run("ip", $"netns pids {Name}");
        if (code != 0) return [];
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture))];
    }

    public void Dispose()
    {
        foreach (var pid in Pids())
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // Already gone.
            }
        }
        if (_cut) Run("iptables", $"-w -D INPUT -i {HostLink} -j DROP");
        Run("ip", $"link del {HostLink}");
        Run("ip", $"netns del {Name}");
    }

    private static void Ip(string args) => RunChecked("ip", args);

    private static void RunChecked(string file, string args)
    {
        var (code, output) = Run(file, args);
        if (code != 0) throw new InvalidOperationException($"{file} {args} failed ({code}): {output}");
    }

    private static (int Code, string Output) Run(string file, string args)
    {
        var info = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr);
    }
}
