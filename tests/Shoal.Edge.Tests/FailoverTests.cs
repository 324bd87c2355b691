using System.Net;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Microsoft.AspNetCore.Http;
using Shoal.Testing;

namespace Shoal.Edge.Tests;

/// <summary>Retries before the first response byte, body replay, passive ejection, 413.</summary>
public sealed class FailoverTests
{
    [Fact]
    public async Task A_refused_connection_is_retried_on_another_replica_with_the_same_body_and_the_dead_replica_is_ejected()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var good = await TestReplica.EchoAsync("good");
        edge.SetCluster("demo", [("dead", DeadAddress.Next()), good.Route], BalancingPolicy.RoundRobin);
        using var client = edge.Client();

        // Round robin starts with "dead": the first request fails over, later ones skip the ejected replica.
        for (var i = 0; i < 4; i++)
        {
            using var response = await client.PostAsync("/c/demo/v1/chat/completions", new StringContent("{\"n\":" + i + "}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("good:/v1/chat/completions:{\"n\":" + i + "}", await response.Content.ReadAsStringAsync());
            Assert.Equal("good", response.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
        }

        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_retries_total{cluster=\"demo\"} 1\n", metrics);
        Assert.Contains("shoal_edge_ejections_total{cluster=\"demo\",replica=\"dead\"} 1\n", metrics);
        Assert.Contains("shoal_edge_replica_ejected{cluster=\"demo\",replica=\"dead\"} 1\n", metrics);
        Assert.Contains("shoal_edge_upstream_attempts_total{cluster=\"demo\",replica=\"dead\",outcome=\"error\"} 1\n", metrics);
        Assert.Contains("shoal_edge_upstream_attempts_total{cluster=\"demo\",replica=\"good\",outcome=\"2xx\"} 4\n", metrics);
        Assert.Contains("shoal_edge_requests_total{cluster=\"demo\",code=\"2xx\"} 4\n", metrics);
        Assert.Contains("shoal_edge_request_duration_seconds_bucket{cluster=\"demo\",le=\"+Inf\"} 4\n", metrics);
        Assert.Contains("shoal_edge_request_duration_seconds_count{cluster=\"demo\"} 4\n", metrics);
        Assert.Contains("shoal_edge_time_to_first_byte_seconds_count{cluster=\"demo\"} 4\n", metrics);
    }

    [Fact]
    public async Task A_503_is_retried_on_another_replica_never_the_same_twice_in_a_row_and_the_last_answer_passes_through()
    {
        var log = new List<string>();
        await using var edge = await TestEdge.StartAsync();
        await using var a = await TestReplica.StatusAsync("a", 503, log);
        await using var b = await TestReplica.StatusAsync("b", 502, log);
        edge.SetCluster("demo", [a.Route, b.Route], BalancingPolicy.RoundRobin);
        using var client = edge.Client();

        using var response = await client.PostAsync("/c/demo/v1/completions", new StringContent("{}"));
        // Three attempts (the default), alternating, and the third replica's answer is what the client gets.
        Assert.Equal(["a", "b", "a"], log);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("a says 503", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_503_from_the_only_replica_is_passed_on_at_once_and_a_429_is_retried_elsewhere_without_ejecting()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var only = await TestReplica.StatusAsync("only", 503);
        edge.SetCluster("single", [only.Route]);
        await using var full = await TestReplica.StatusAsync("full", 429);
        await using var good = await TestReplica.EchoAsync("good");
        edge.SetCluster("demo", [full.Route, good.Route], BalancingPolicy.RoundRobin);
        using var client = edge.Client();

        using var single = await client.GetAsync("/c/single/x");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, single.StatusCode);
        Assert.Equal(1, only.Hits);

        for (var i = 0; i < 6; i++)
        {
            using var response = await client.GetAsync("/c/demo/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // A full replica keeps getting its turn: 429 is "busy", not "broken".
        Assert.Equal(6, full.Hits);
        Assert.Equal(6, good.Hits);
        Assert.Contains("shoal_edge_ejections_total{cluster=\"demo\",replica=\"full\"} 0\n", await edge.MetricsAsync());
    }

    [Fact]
    public async Task A_body_larger_than_the_replay_buffer_is_sent_once_and_never_replayed()
    {
        var log = new List<string>();
        await using var edge = await TestEdge.StartAsync();
        await using var bad = await TestReplica.StartAsync("bad", async ctx =>
        {
            await ctx.Request.Body.CopyToAsync(Stream.Null);
            ctx.Response.StatusCode = 503;
        }, log);
        await using var good = await TestReplica.EchoAsync("good", log);
        edge.SetCluster("demo", [bad.Route, good.Route], BalancingPolicy.RoundRobin);
        using var client = edge.Client();

        var big = new string('x', EdgeOptions.ReplayBufferBytes + 10);
        using var response = await client.PostAsync("/c/demo/v1/completions", new StringContent(big));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(["bad"], log);

        // The same size chunked (no Content-Length) is also forwarded whole, once.
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes(big))) };
        chunked.Headers.TransferEncodingChunked = true;
        using var second = await client.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal("good:/v1/completions:" + big, await second.Content.ReadAsStringAsync());

        // A chunked body under the replay limit is buffered and replayed.
        log.Clear();
        using var small = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = new StreamContent(new MemoryStream("hello"u8.ToArray())) };
        small.Headers.TransferEncodingChunked = true;
        using var third = await client.SendAsync(small);
        Assert.Equal(["bad", "good"], log);
        Assert.Equal("good:/v1/completions:hello", await third.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_body_over_the_limit_is_refused_with_413_and_the_error_json()
    {
        await using var edge = await TestEdge.StartAsync(new EdgeOptions { MaxRequestBodyBytes = 1000 });
        await using var good = await TestReplica.EchoAsync("good");
        edge.SetCluster("demo", [good.Route]);
        using var client = edge.Client();

        using var declared = await client.PostAsync("/c/demo/v1/completions", new StringContent(new string('x', 1001)));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Assert.Equal(ErrorCodes.PayloadTooLarge, (await declared.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);

        // The edge answers 413 and closes the connection while the client may still be sending the
        // rest of the body; under load the kernel can then reset the connection before the client
        // reads the answer (a TCP race, not the edge's). So a reset attempt is repeated, up to 3.
        HttpResponseMessage? streamed = null;
        for (var attempt = 0; streamed is null; attempt++)
        {
            using var chunked = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = new StreamContent(new MemoryStream(new byte[5000])) };
            chunked.Headers.TransferEncodingChunked = true;
            try
            {
                streamed = await client.SendAsync(chunked);
            }
            catch (HttpRequestException) when (attempt < 2)
            {
            }
        }
        using var _ = streamed;
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, streamed.StatusCode);
        Assert.Equal(ErrorCodes.PayloadTooLarge, (await streamed.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);
        Assert.Equal(0, good.Hits);

        using var fits = await client.PostAsync("/c/demo/v1/completions", new StringContent(new string('x', 1000)));
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
    }

    [Fact]
    public async Task A_chunked_body_over_the_replicas_limit_gets_its_413_not_a_500()
    {
        // The simulator takes bodies up to 1 MiB, as a model server would have a limit of its own;
        // the edge's is larger (16 MiB), so the body streams through and the replica refuses it.
        await using var sim = Shoal.Sim.SimServer.Build(new Shoal.Sim.SimOptions { Port = 0, ReplicaId = "sim" });
        await sim.StartAsync();
        await using var edge = await TestEdge.StartAsync();
        edge.SetCluster("demo", [("sim", Shoal.Sim.SimServer.Address(sim))]);
        using var client = edge.Client();
        var big = "{\"model\":\"m\",\"prompt\":\"" + new string('x', Shoal.Sim.SimOptions.MaxBodyBytes + 100_000) + "\"}";

        foreach (var chunked in (bool[])[true, false])
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes(big))) };
            request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            if (chunked) request.Headers.TransferEncodingChunked = true;
            else request.Content.Headers.ContentLength = big.Length;
            using var response = await client.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.RequestEntityTooLarge, $"chunked {chunked}: {(int)response.StatusCode} {body}");
            // The sim's own answer when it could be read, else the edge's error JSON: a payload-too-large either way.
            Assert.Contains(body.Contains("body_too_large", StringComparison.Ordinal) ? "body_too_large" : ErrorCodes.PayloadTooLarge, body, StringComparison.Ordinal);
        }

        // The replica did nothing wrong: not ejected, so the next request goes to it.
        Assert.Contains("shoal_edge_ejections_total{cluster=\"demo\",replica=\"sim\"} 0\n", await edge.MetricsAsync());
        // The edge is fine afterwards.
        using var fits = await client.PostAsync("/c/demo/v1/completions", new StringContent("{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":2}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
    }

    [Fact]
    public async Task Unknown_clusters_get_404_and_the_edge_serves_its_own_metrics_and_health_only_outside_clusters()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var good = await TestReplica.EchoAsync("good");
        edge.SetCluster("demo", [good.Route]);
        using var client = edge.Client();

        using var unknown = await client.GetAsync("/c/nope/v1/models");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(ErrorCodes.NotFound, (await unknown.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);
        // At the root, /v1/models is the gateway's facade: it needs an endpoint key.
        using var nothing = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, nothing.StatusCode);
        using var other = await client.GetAsync("/v2/models");
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);

        Assert.Equal("ok", await client.GetStringAsync("/healthz"));
        // The edge's own /metrics needs the metrics key.
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/metrics")).StatusCode);
        Assert.Contains("# TYPE shoal_edge_request_duration_seconds histogram", await edge.MetricsAsync());
        // Inside a cluster, /metrics is the replica's.
        Assert.Equal("good:/metrics:", await client.GetStringAsync("/c/demo/metrics"));
        using var byHost = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        byHost.Headers.Host = "demo.localhost";
        Assert.Equal("good:/metrics:", await (await client.SendAsync(byHost)).Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_request_stuck_on_a_replica_whose_node_is_lost_is_retried_elsewhere_at_once_and_a_stream_from_it_is_cut()
    {
        await using var edge = await TestEdge.StartAsync();
        // "stuck" takes requests and never answers, like a frozen node whose sockets stay open;
        // on /stream it sends the headers and one event first.
        await using var stuck = await TestReplica.StartAsync("stuck", async ctx =>
        {
            if (ctx.Request.Path.StartsWithSegments("/stream", StringComparison.Ordinal))
            {
                ctx.Response.ContentType = "text/event-stream";
                await ctx.Response.WriteAsync("data: first\n\n", ctx.RequestAborted);
                await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            }
            await Task.Delay(Timeout.Infinite, ctx.RequestAborted);
        });
        await using var good = await TestReplica.EchoAsync("good");
        edge.SetCluster("demo", [stuck.Route, good.Route], BalancingPolicy.RoundRobin);
        using var client = edge.Client(TimeSpan.FromSeconds(20));

        // Round robin: the first request goes to "stuck", the second to "good", the stream to "stuck".
        var pending = client.PostAsync("/c/demo/v1/completions", new StringContent("{\"n\":1}"));
        await Eventually.UntilAsync(() => stuck.Hits == 1, TimeSpan.FromSeconds(10));
        using var warm = await client.PostAsync("/c/demo/v1/completions", new StringContent("{}"));
        Assert.Equal("good", warm.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
        using var streamResponse = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/c/demo/stream"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("stuck", streamResponse.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
        var stream = await streamResponse.Content.ReadAsStreamAsync();
        var buffer = new byte[256];
        Assert.True(await stream.ReadAsync(buffer) > 0);
        Assert.False(pending.IsCompleted);

        // The control plane loses the node: its replica leaves the table and the node is listed as lost.
        var started = System.Diagnostics.Stopwatch.StartNew();
        edge.Routes.Update(new RouteTable
        {
            Version = edge.Routes.Current.Version + 1,
            Clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal) { ["demo"] = TestEdge.Route("demo", [good.Route]) },
            LostNodes = ["node-stuck"],
        });

        using var response = await pending;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("good:/v1/completions:{\"n\":1}", await response.Content.ReadAsStringAsync());
        // The stream from the lost node ends with an error, not a hang (the client waits 20 s at most).
        var ended = await Record.ExceptionAsync(async () =>
        {
            while (await stream.ReadAsync(buffer) > 0)
            {
            }
        });
        Assert.NotNull(ended);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"took {started.Elapsed}");
        // The client may see its stream end before the edge has counted the cut attempt (YARP aborts the connection first).
        // The unanswered request may be cut either as on a lost node or as leaving routing (the same
        // table says both, and either cut may come first): both attempts are counted, one way or the other.
        await Eventually.GetAsync(edge.MetricsAsync, m =>
            Counter(m, "shoal_edge_upstream_attempts_total{cluster=\"demo\",replica=\"stuck\",outcome=\"error\"}")
            + Counter(m, "shoal_edge_attempts_cut_total{cluster=\"demo\",reason=\"left-routing\"}") >= 2,
            TimeSpan.FromSeconds(10), "both cut attempts counted");
    }

    private static long Counter(string metrics, string series)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal)) return long.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return 0;
    }
}
