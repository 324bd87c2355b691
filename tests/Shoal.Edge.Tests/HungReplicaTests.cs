using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Edge.Tests;

/// <summary>
/// A replica that takes requests and never answers (issue 14, item 5): the first-byte cap cuts the
/// attempt and retries it elsewhere; a replica that leaves the table other than by draining has
/// its unanswered attempts cut; a draining one keeps them. Fake time: the cap passes when the test says.
/// </summary>
public sealed class HungReplicaTests
{
    private const int CapMs = 2000;

    [Fact]
    public async Task An_attempt_without_headers_within_the_first_byte_cap_is_cut_and_retried_elsewhere_and_the_replica_counts_a_failure()
    {
        var time = new FakeTimeProvider();
        await using var edge = await TestEdge.StartAsync(services: s => s.AddSingleton<TimeProvider>(time));
        await using var hung = await HungAsync("hung");
        await using var good = await TestReplica.EchoAsync("good");
        edge.Routes.Update(Table(edge, Route([hung.Route, good.Route], firstByteTimeoutMs: CapMs)));
        using var client = edge.Client(TimeSpan.FromSeconds(20));

        // Round robin starts with "hung".
        var pending = client.PostAsync("/c/demo/v1/chat/completions", new StringContent("{\"n\":1}"));
        await Eventually.UntilAsync(() => hung.Hits == 1, TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromMilliseconds(CapMs - 1));
        await Task.Delay(100);
        Assert.False(pending.IsCompleted, "cut before the cap");

        time.Advance(TimeSpan.FromMilliseconds(1));
        using var response = await pending;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("good:/v1/chat/completions:{\"n\":1}", await response.Content.ReadAsStringAsync());
        Assert.Equal(1, edge.Router.Replicas.Single(r => r.ReplicaId == "hung").ConsecutiveFailures);
        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_attempts_cut_total{cluster=\"demo\",reason=\"first-byte-timeout\"} 1\n", metrics);
        Assert.Contains("shoal_edge_attempts_cut_total{cluster=\"demo\",reason=\"left-routing\"} 0\n", metrics);
        Assert.Contains("shoal_edge_upstream_attempts_total{cluster=\"demo\",replica=\"hung\",outcome=\"error\"} 1\n", metrics);
        Assert.Contains("shoal_edge_retries_total{cluster=\"demo\"} 1\n", metrics);
    }

    [Fact]
    public async Task A_slow_answer_within_the_cap_is_not_cut_and_without_a_cluster_cap_the_edge_default_applies()
    {
        var time = new FakeTimeProvider();
        await using var edge = await TestEdge.StartAsync(new EdgeOptions { FirstByteTimeout = TimeSpan.FromMilliseconds(CapMs) }, services: s => s.AddSingleton<TimeProvider>(time));
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var slow = await TestReplica.StartAsync("slow", async ctx =>
        {
            await release.Task.WaitAsync(ctx.RequestAborted);
            await ctx.Response.WriteAsync("slow answer", ctx.RequestAborted);
        });
        await using var good = await TestReplica.EchoAsync("good");
        edge.Routes.Update(Table(edge, Route([slow.Route, good.Route])));
        using var client = edge.Client(TimeSpan.FromSeconds(20));

        var pending = client.PostAsync("/c/demo/v1/chat/completions", new StringContent("{}"));
        await Eventually.UntilAsync(() => slow.Hits == 1, TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromMilliseconds(CapMs - 1));
        release.SetResult();
        using var response = await pending;
        Assert.Equal("slow answer", await response.Content.ReadAsStringAsync());
        // The cap's timer is gone with the attempt: time passing later cuts nothing.
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Contains("shoal_edge_attempts_cut_total{cluster=\"demo\",reason=\"first-byte-timeout\"} 0\n", await edge.MetricsAsync());

        // The edge's default is a cap too: a hung attempt is cut at it.
        await using var hung = await HungAsync("hung");
        // (Another cluster, so round robin starts again with the first replica.)
        edge.Routes.Update(Table(edge, Route([hung.Route, good.Route], cluster: "other")));
        var cut = client.PostAsync("/c/other/v1/chat/completions", new StringContent("{}"));
        await Eventually.UntilAsync(() => hung.Hits == 1, TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromMilliseconds(CapMs));
        using var retried = await cut;
        Assert.Equal("good", retried.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
    }

    [Fact]
    public async Task The_cap_does_not_cut_the_only_replica_but_leaving_the_table_unhealthy_does_and_the_request_waits_for_another()
    {
        var time = new FakeTimeProvider();
        await using var edge = await TestEdge.StartAsync(services: s => s.AddSingleton<TimeProvider>(time));
        await using var hung = await HungAsync("hung");
        await using var good = await TestReplica.EchoAsync("good");
        edge.Routes.Update(Table(edge, Route([hung.Route], firstByteTimeoutMs: CapMs, queueTimeoutMs: 30_000)));
        using var client = edge.Client(TimeSpan.FromSeconds(20));

        var pending = client.PostAsync("/c/demo/v1/chat/completions", new StringContent("{\"n\":2}"));
        await Eventually.UntilAsync(() => hung.Hits == 1, TimeSpan.FromSeconds(10));
        // Nobody else could take it: the cap would turn a slow answer into none, so it does not apply.
        time.Advance(TimeSpan.FromMilliseconds(CapMs * 3));
        await Task.Delay(100);
        Assert.False(pending.IsCompleted);

        // The replica turns unhealthy: out of the table, not draining. Its attempt is cut, and the request held.
        edge.Routes.Update(Table(edge, Route([], firstByteTimeoutMs: CapMs, queueTimeoutMs: 30_000)));
        await Eventually.UntilAsync(() => edge.Router.Clusters.Single(c => c.Name == "demo").DepartedCuts == 1, TimeSpan.FromSeconds(10));
        Assert.False(pending.IsCompleted);
        edge.Routes.Update(Table(edge, Route([good.Route], firstByteTimeoutMs: CapMs, queueTimeoutMs: 30_000)));
        using var response = await pending;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("good:/v1/chat/completions:{\"n\":2}", await response.Content.ReadAsStringAsync());
        Assert.Contains("shoal_edge_attempts_cut_total{cluster=\"demo\",reason=\"left-routing\"} 1\n", await edge.MetricsAsync());
    }

    [Fact]
    public async Task A_draining_replica_keeps_its_unanswered_requests_and_a_stream_that_started_is_not_cut_when_its_replica_leaves()
    {
        await using var edge = await TestEdge.StartAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var draining = await TestReplica.StartAsync("draining", async ctx =>
        {
            await release.Task.WaitAsync(ctx.RequestAborted);
            await ctx.Response.WriteAsync("finished", ctx.RequestAborted);
        });
        await using var streaming = await TestReplica.StartAsync("streaming", async ctx =>
        {
            await ctx.Response.WriteAsync("data: first\n\n", ctx.RequestAborted);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            await release.Task.WaitAsync(ctx.RequestAborted);
            await ctx.Response.WriteAsync("data: last\n\n", ctx.RequestAborted);
        });
        await using var good = await TestReplica.EchoAsync("good");
        edge.Routes.Update(Table(edge, Route([draining.Route], cluster: "a"), Route([streaming.Route], cluster: "b")));
        using var client = edge.Client(TimeSpan.FromSeconds(20));

        var pending = client.PostAsync("/c/a/v1/chat/completions", new StringContent("{}"));
        using var stream = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/c/b/stream"), HttpCompletionOption.ResponseHeadersRead);
        await Eventually.UntilAsync(() => draining.Hits == 1, TimeSpan.FromSeconds(10));

        // "draining" drains (listed), "streaming" left unhealthy: neither request is cut.
        edge.Routes.Update(Table(edge, Route([good.Route], cluster: "a"), Route([good.Route], cluster: "b")) with { DrainingReplicas = ["draining"] });
        await Task.Delay(200);
        Assert.False(pending.IsCompleted);
        release.SetResult();
        using var response = await pending;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("finished", await response.Content.ReadAsStringAsync());
        Assert.Equal("data: first\n\ndata: last\n\n", await stream.Content.ReadAsStringAsync());
        Assert.Contains("shoal_edge_attempts_cut_total{cluster=\"a\",reason=\"left-routing\"} 0\n", await edge.MetricsAsync());
    }

    /// <summary>A replica that takes requests and never answers (a SIGSTOPped process, as the edge sees it).</summary>
    private static Task<TestReplica> HungAsync(string id) => TestReplica.StartAsync(id, ctx => Task.Delay(Timeout.Infinite, ctx.RequestAborted));

    private static ClusterRoute Route(IEnumerable<(string Id, Uri Address)> replicas, int? firstByteTimeoutMs = null, int queueTimeoutMs = 2000, string cluster = "demo") =>
        TestEdge.Route(cluster, replicas, BalancingPolicy.RoundRobin, queueTimeoutMs) with { FirstByteTimeoutMs = firstByteTimeoutMs };

    private static RouteTable Table(TestEdge edge, params ClusterRoute[] routes) => new()
    {
        Version = edge.Routes.Current.Version + 1,
        Clusters = routes.ToDictionary(r => r.Cluster, StringComparer.Ordinal),
    };
}
