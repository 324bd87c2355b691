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

    /// <summary>TCP keep-alive on a tunnel: a peer whose machine stops answering is dropped after about 11 s.</summary>
    public static void KeepAlive(Socket socket)
    {
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 5);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 2);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Not a TCP socket, or already closed: the tunnel works without keep-alive.
        }
    }
}
