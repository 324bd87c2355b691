using System.Net;
using System.Net.Sockets;

namespace Shoal.Testing;

/// <summary>
/// Finds free TCP ports on 127.0.0.1 for servers a test starts as separate processes. Ports come from
/// 20000-32767, below Linux's ephemeral range (32768-60999): a port the OS picked for "any free port" can
/// be taken by the next outgoing connection of any process before the test's server binds it ("address
/// already in use"); these cannot. Each process starts at a random point and never hands out a port
/// twice, and a port is only handed out when it can be bound now.
/// </summary>
public static class FreePort
{
    private const int First = 20_000;
    private const int Count = 32_768 - First;
    private static int s_next = Random.Shared.Next(Count);

    public static int Next()
    {
        for (var tries = 0; tries < Count; tries++)
        {
            var port = First + (int)((uint)Interlocked.Increment(ref s_next) % Count);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // In use: the next one.
            }
        }
        using var any = new TcpListener(IPAddress.Loopback, 0);
        any.Start();
        return ((IPEndPoint)any.LocalEndpoint).Port;
    }
}
