using System.Net.Sockets;

namespace Shoal.Contracts;

/// <summary>Where and how an agent reaches an edge's tunnel listener, and the socket settings both ends use.</summary>
public static class TunnelWire
{
    /// <summary>
    /// The edge's base URL (<c>http://host:port</c> or <c>https://host:port</c>) as the TCP endpoint
    /// tunnels connect to, with TLS for https. False when it is not an absolute http(s) URL.
    /// </summary>
    public static bool TryParseEdge(string url, out string host, out int port, out bool tls)
    {
        host = "";
        port = 0;
        tls = false;
        if (!Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host)) return false;
        if (uri.Scheme is not ("http" or "https")) return false;
        host = uri.IdnHost;
        port = uri.Port;
        tls = uri.Scheme == "https";
        return true;
    }

    /// <summary>
    /// Keep-alive on a tunnel, done by the kernel: an idle connection is probed after 5 s of silence
    /// and dropped when the peer's machine stops answering (about 11 s), and on Linux bytes left
    /// unacknowledged for 15 s (the link went dark mid-request) end it too
    /// (<c>TCP_USER_TIMEOUT</c>), instead of the kernel's default of about 15 minutes of retransmission.
    /// </summary>
    public static void KeepAlive(Socket socket)
    {
        const int IpProtoTcp = 6, TcpUserTimeout = 18;
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 5);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 2);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
            if (OperatingSystem.IsLinux()) socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, BitConverter.GetBytes(15_000));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Not a TCP socket, or already closed: the tunnel works without keep-alive.
        }
    }
}
