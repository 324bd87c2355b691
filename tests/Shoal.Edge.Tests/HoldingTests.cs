using System.Net;
using System.Net.Http.Json;
using Shoal.Contracts;

namespace Shoal.Edge.Tests;

/// <summary>Requests wait for a ready replica up to the cluster's queue timeout.</summary>
public sealed class HoldingTests
{
    [Fact]
    public async Task A_request_for_a_cluster_without_replicas_waits_until_one_appears_in_the_route_table()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.EchoAsync("late");
        edge.SetCluster("demo", [], queueTimeoutMs: 20_000);
        using var client = edge.Client();

        var pending = client.PostAsync("/c/demo/v1/completions", new StringContent("held body"));
        await Shoal.Testing.Eventually.GetAsync(edge.MetricsAsync, m => m.Contains("shoal_edge_holding_requests{cluster=\"demo\"} 1\n", StringComparison.Ordinal), what: "request held");
        Assert.False(pending.IsCompleted);

        edge.SetCluster("demo", [replica.Route], queueTimeoutMs: 20_000);
        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("late:/v1/completions:held body", await response.Content.ReadAsStringAsync());

        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_held_requests_total{cluster=\"demo\"} 1\n", metrics);
        Assert.Contains("shoal_edge_holding_requests{cluster=\"demo\"} 0\n", metrics);
        Assert.Contains("shoal_edge_hold_timeouts_total{cluster=\"demo\"} 0\n", metrics);
    }

    [Fact]
    public async Task After_the_queue_timeout_the_request_gets_503_with_retry_after_and_a_zero_timeout_does_not_hold()
    {
        await using var edge = await TestEdge.StartAsync();
        edge.SetCluster("demo", [], queueTimeoutMs: 300);
        edge.SetCluster("nowait", [], queueTimeoutMs: 0);
        using var client = edge.Client();

        using var response = await client.GetAsync("/c/demo/v1/models");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Equal(ErrorCodes.Unavailable, (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);

        using var immediate = await client.GetAsync("/c/nowait/v1/models");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, immediate.StatusCode);

        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_hold_timeouts_total{cluster=\"demo\"} 1\n", metrics);
        Assert.Contains("shoal_edge_held_requests_total{cluster=\"nowait\"} 0\n", metrics);
    }

    [Fact]
    public async Task When_every_replica_failed_and_was_ejected_the_request_waits_for_a_replacement()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var replacement = await TestReplica.EchoAsync("replacement");
        edge.SetCluster("demo", [("dead", DeadAddress.Next())], queueTimeoutMs: 20_000);
        using var client = edge.Client();

        var pending = client.GetAsync("/c/demo/v1/models");
        await Shoal.Testing.Eventually.GetAsync(edge.MetricsAsync, m => m.Contains("shoal_edge_holding_requests{cluster=\"demo\"} 1\n", StringComparison.Ordinal), what: "request held after the failure");
        edge.SetCluster("demo", [("dead", DeadAddress.Next()), replacement.Route], queueTimeoutMs: 20_000);

        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("replacement", response.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
    }
}
