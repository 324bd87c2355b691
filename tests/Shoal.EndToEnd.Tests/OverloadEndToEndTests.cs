using System.Net;
using System.Net.Sockets;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// Issue 13, must-show 6: 2,000 idle connections against the edge of a real <c>shoal server</c>
/// whose file limit is 1,024. The process stays up, the API (its own listener in the same process)
/// answers throughout, the edge logs what it refused, and it serves again once the connections close.
/// Before the edge kept file descriptors free, the runtime ended the whole process ("Out of memory.")
/// when it could not get a descriptor for a new thread.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class OverloadEndToEndTests(ITestOutputHelper output)
{
    private const int FileLimit = 1024;
    private const int Connections = 2000;

    [Theory]
    [InlineData("automatic limit", new string[0], "connections were open, the most allowed")]
    // A limit far beyond what the file limit allows: the listener's descriptor headroom must hold alone.
    [InlineData("limit above the file limit", new[] { "--edge-max-connections", "100000" }, "running out of file descriptors")]
    public async Task Idle_connections_beyond_the_file_limit_leave_the_server_up_and_the_api_answering(string name, string[] extra, string refusal)
    {
        output.WriteLine(name);
        using var dir = new TempDirectory("shoal-overload");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(10) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(5) };
        await using var server = ShoalProcess.Start("server",
            ["server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"), "--log-level", "Warning", .. extra],
            fileLimit: FileLimit);
        var held = new List<Socket>();
        try
        {
            await DeployEndToEndTests.WaitForServerAsync(api, dir.Combine("server"));
            Assert.Equal(HttpStatusCode.OK, (await edge.GetAsync("/healthz")).StatusCode);

            // The API is asked every 100 ms while the connections are opened and held; every answer must come.
            using var stopPolling = new CancellationTokenSource();
            var polls = PollAsync(api, stopPolling.Token);

            var failed = await OpenIdleAsync(edgePort, held);
            output.WriteLine($"{held.Count} connections open, {failed} failed to connect");
            // Those that could not connect met a full backlog: refused too. More got through than the edge may hold.
            Assert.Equal(Connections, held.Count + failed);
            Assert.True(held.Count > 384, $"only {held.Count} connections opened");
            Assert.False(server.HasExited, "the server exited:\n" + server.Output);
            Assert.Equal(HttpStatusCode.OK, (await api.GetAsync("/healthz")).StatusCode);

            // Hold them past the undecided timeout, while the edge keeps refusing new ones.
            await Task.Delay(TimeSpan.FromSeconds(6));
            Assert.False(server.HasExited, "the server exited:\n" + server.Output);
            await stopPolling.CancelAsync();
            var (answered, missed) = await polls;
            output.WriteLine($"API answered {answered} times during the flood");
            Assert.True(missed == 0, $"the API failed {missed} of {answered + missed} requests during the flood:\n{server.Output}");
            Assert.True(answered >= 10, $"the API was asked only {answered} times");

            foreach (var socket in held) socket.Dispose();
            held.Clear();

            // Serving again, and it said what it refused.
            await Eventually.GetAsync(async () =>
            {
                try
                {
                    return (await edge.GetAsync("/healthz")).StatusCode;
                }
                catch (HttpRequestException)
                {
                    return HttpStatusCode.ServiceUnavailable;
                }
            }, s => s == HttpStatusCode.OK, TimeSpan.FromSeconds(20), "the edge serving again");
            Assert.Equal(HttpStatusCode.OK, (await api.GetAsync("/healthz")).StatusCode);
            Assert.False(server.HasExited);
            Assert.Contains(refusal, server.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Out of memory", server.Output, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var socket in held) socket.Dispose();
            output.WriteLine(server.Output);
        }
    }

    /// <summary>Opens <see cref="Connections"/> TCP connections to the edge that send nothing, 200 at a time; returns how many failed.</summary>
    private static async Task<int> OpenIdleAsync(int port, List<Socket> held)
    {
        var failed = 0;
        using var gate = new SemaphoreSlim(200);
        await Task.WhenAll(Enumerable.Range(0, Connections).Select(async _ =>
        {
            await gate.WaitAsync();
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                await socket.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
                lock (held) held.Add(socket);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                Interlocked.Increment(ref failed);
            }
            finally
            {
                gate.Release();
            }
        }));
        return failed;
    }

    private static async Task<(int Answered, int Missed)> PollAsync(HttpClient api, CancellationToken stop)
    {
        int answered = 0, missed = 0;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var response = await api.GetAsync("/healthz", CancellationToken.None);
                if (response.StatusCode == HttpStatusCode.OK) answered++;
                else missed++;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                missed++;
            }
            try
            {
                await Task.Delay(100, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }
        return (answered, missed);
    }
}
