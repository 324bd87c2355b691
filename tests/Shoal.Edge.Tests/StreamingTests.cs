using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Shoal.Edge.Tests;

/// <summary>Server-sent events pass through unbuffered; cut streams end with an error; stalled clients let go of the replica.</summary>
public sealed class StreamingTests
{
    private static HttpRequestMessage StreamRequest(string path) => new(HttpMethod.Post, path) { Content = new StringContent("{\"stream\":true}") };

    [Fact]
    public async Task Events_reach_the_client_as_the_replica_sends_them()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.StartAsync("sse", async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("data: first\n\n", ctx.RequestAborted);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            // The second event only comes once the client has seen the first through the edge.
            await release.Task.WaitAsync(ctx.RequestAborted);
            await ctx.Response.WriteAsync("data: second\n\ndata: [DONE]\n\n", ctx.RequestAborted);
        });
        edge.SetCluster("demo", [replica.Route]);
        using var client = edge.Client();

        using var response = await client.SendAsync(StreamRequest("/c/demo/v1/chat/completions"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.Equal("data: first", await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)));
        release.SetResult();
        Assert.Equal("", await reader.ReadLineAsync());
        Assert.Equal("data: second", await reader.ReadLineAsync());
        Assert.Contains("data: [DONE]", await reader.ReadToEndAsync());
    }

    [Fact]
    public async Task A_stream_cut_by_the_replica_ends_promptly_with_an_error_at_the_client()
    {
        var cut = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.StartAsync("dying", async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("data: first\n\n", ctx.RequestAborted);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            await cut.Task;
            ctx.Abort();
        });
        edge.SetCluster("demo", [replica.Route]);
        using var client = edge.Client(TimeSpan.FromMinutes(1));

        using var response = await client.SendAsync(StreamRequest("/c/demo/v1/chat/completions"), HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[1024];
        Assert.True(await stream.ReadAsync(buffer) > 0);
        var clock = Stopwatch.StartNew();
        cut.SetResult();
        await Assert.ThrowsAnyAsync<IOException>(async () =>
        {
            while (await stream.ReadAsync(buffer) > 0)
            {
            }
        });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"the cut stream took {clock.Elapsed} to end");
    }

    [Fact]
    public async Task A_client_that_stops_reading_a_stream_is_dropped_and_the_replica_request_is_cancelled()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var edge = await TestEdge.StartAsync(new EdgeOptions { ClientStallTimeout = TimeSpan.FromSeconds(2) });
        await using var replica = await TestReplica.StartAsync("endless", async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            var chunk = Encoding.ASCII.GetBytes("data: " + new string('x', 16 * 1024) + "\n\n");
            // Kestrel may accept writes silently once the connection is gone, so watch the token itself.
            using var _ = ctx.RequestAborted.Register(() => cancelled.TrySetResult());
            try
            {
                // Far more than the socket buffers between here and a client that reads nothing.
                for (var i = 0; i < 100_000 && !ctx.RequestAborted.IsCancellationRequested; i++) await ctx.Response.Body.WriteAsync(chunk, ctx.RequestAborted);
                await Task.Delay(Timeout.Infinite, ctx.RequestAborted);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
            }
        });
        edge.SetCluster("demo", [replica.Route]);
        using var client = edge.Client(TimeSpan.FromMinutes(1));

        using var response = await client.SendAsync(StreamRequest("/c/demo/v1/chat/completions"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // Read nothing: once the socket buffers are full the edge's writes stall, it drops the client and lets go of the replica.
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await Shoal.Testing.Eventually.GetAsync(edge.MetricsAsync, m => m.Contains("shoal_edge_replica_in_flight{cluster=\"demo\",replica=\"endless\"} 0\n", StringComparison.Ordinal), what: "in-flight back to 0");
    }
}
