using System.Collections.Immutable;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Shoal.ControlPlane.State;

/// <summary>
/// Where edges may connect to reach a node in direct mode. A node says where it is; the operator
/// decides whether edges go there: the node's token must allow direct mode, and the address must be
/// an IP address in the server's node networks (<c>--node-networks</c>). Loopback, the server's
/// own addresses and unspecified addresses are refused unless the server runs for local use
/// (<c>--allow-loopback-nodes</c>, set by <c>shoal dev</c>); link-local and multicast addresses
/// (169.254.169.254 is a cloud metadata service) are always refused; and even for local use a
/// replica may not sit on one of the server's own ports (its API, its edge). Ports are 1-65535.
/// </summary>
public sealed class NodeAddressPolicy
{
    private readonly IReadOnlyList<IPNetwork> _networks;
    private readonly bool _allowLoopback;
    private readonly ImmutableHashSet<IPAddress> _ownAddresses;
    private ImmutableHashSet<int> _ownPorts = [];

    public NodeAddressPolicy(IReadOnlyList<IPNetwork> networks, bool allowLoopback, IEnumerable<IPAddress> ownAddresses)
    {
        _networks = networks;
        _allowLoopback = allowLoopback;
        _ownAddresses = ownAddresses.Select(Normalize).ToImmutableHashSet();
    }

    /// <summary>The policy the server's options ask for, with this machine's interface addresses as its own.</summary>
    public static NodeAddressPolicy FromOptions(ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var networks = options.NodeNetworks.Select(n => IPNetwork.Parse(n.Trim())).ToList();
        return new NodeAddressPolicy(networks, options.AllowLoopbackNodes, LocalAddresses());
    }

    /// <summary>A port the server listens on (API, edge): never a replica's port on the server's machine.</summary>
    public void AddServerPort(int port) => ImmutableInterlocked.Update(ref _ownPorts, set => set.Add(port));

    /// <summary>
    /// Why edges may not connect to a direct-mode node at <paramref name="address"/>; null when they may.
    /// </summary>
    public string? CheckAddress(string address, bool directAllowed)
    {
        if (!IPAddress.TryParse(address, out var ip))
        {
            return $"address '{Truncate(address)}' is not an IP address (direct mode needs one; a name could resolve anywhere)";
        }
        ip = Normalize(ip);
        if (IsLinkLocal(ip) || IsMulticast(ip))
        {
            return $"address {ip} is link-local or multicast: edges never connect there";
        }
        if (IsLocal(ip))
        {
            // Local use: the agent runs on the server's machine, which the operator chose to allow.
            return _allowLoopback ? null
                : $"address {ip} is loopback or the server's own: edges connect there only when the server runs with --allow-loopback-nodes";
        }
        if (!directAllowed)
        {
            return "direct mode is not allowed for this node: register it with a token created with --direct, or run the agent without --direct to use tunnels";
        }
        if (!_networks.Any(n => n.Contains(ip)))
        {
            return _networks.Count == 0
                ? $"address {ip} is not in the server's node networks (none set: --node-networks)"
                : $"address {ip} is not in the server's node networks ({string.Join(", ", _networks)})";
        }
        return null;
    }

    /// <summary>Why edges may not connect to port <paramref name="port"/> at <paramref name="address"/> (an address <see cref="CheckAddress"/> let through); null when they may.</summary>
    public string? CheckPort(string address, int port)
    {
        if (port is < 1 or > 65535) return $"port {port} is not between 1 and 65535";
        // Cheapest first: this runs for every direct replica each time a route table is built.
        if (_ownPorts.Contains(port) && IPAddress.TryParse(address, out var ip) && IsLocal(Normalize(ip)))
        {
            return $"port {port} at {Normalize(ip)} is one of the server's own (API or edge)";
        }
        return null;
    }

    private bool IsLocal(IPAddress ip) =>
        IPAddress.IsLoopback(ip) || ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any) || _ownAddresses.Contains(ip);

    private static bool IsLinkLocal(IPAddress ip) =>
        ip.AddressFamily == AddressFamily.InterNetwork
            ? ip.GetAddressBytes() is [169, 254, _, _]
            : ip.IsIPv6LinkLocal || ip.IsIPv6SiteLocal;

    private static bool IsMulticast(IPAddress ip) =>
        ip.AddressFamily == AddressFamily.InterNetwork
            ? ip.GetAddressBytes()[0] >= 224
            : ip.IsIPv6Multicast;

    private static IPAddress Normalize(IPAddress ip)
    {
        ip = ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
        // Scope ids do not make another address.
        if (ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.ScopeId != 0) ip = new IPAddress(ip.GetAddressBytes());
        return ip;
    }

    private static IEnumerable<IPAddress> LocalAddresses()
    {
        try
        {
            return NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(i => i.GetIPProperties().UnicastAddresses)
                .Select(a => a.Address)
                .ToList();
        }
        catch (NetworkInformationException)
        {
            return [];
        }
    }

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";
}
