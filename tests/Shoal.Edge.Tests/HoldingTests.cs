using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Contracts;
using Shoal.Edge.Upstreams;
using Shoal.Testing;

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

    private static Task Holding(TestEdge edge, int count) =>
        Eventually.GetAsync(edge.MetricsAsync, m => m.Contains($"shoal_edge_holding_requests{{cluster=\"demo\"}} {count}\n", StringComparison.Ordinal), what: $"{count} requests held");

    private static void SetBounded(TestEdge edge, int maxHeld, params (string Id, Uri Address)[] replicas) =>
        edge.Routes.Update(new RouteTable
        {
            Version = edge.Routes.Current.Version + 1,
            Clusters = new(StringComparer.Ordinal) { ["demo"] = TestEdge.Route("demo", replicas, queueTimeoutMs: 20_000) with { MaxHeld = maxHeld } },
        });

    private static HttpRequestMessage Numbered(int n)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = new StringContent("request " + n) };
        request.Headers.Add("x-seq", n.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return request;
    }

    [Fact]
    public async Task Held_requests_go_to_the_replica_that_appears_in_arrival_order()
    {
        await using var replica = await TestReplica.EchoAsync("late");
        using var connector = new RecordingConnector();
        await using var edge = await TestEdge.StartAsync(services: s => s.AddSingleton<IUpstreamConnector>(connector));
        edge.SetCluster("demo", [], queueTimeoutMs: 20_000);
        using var client = edge.Client();

        var pending = new List<Task<HttpResponseMessage>>();
        for (var i = 0; i < 8; i++)
        {
            pending.Add(client.SendAsync(Numbered(i)));
            await Holding(edge, i + 1);
        }
        edge.SetCluster("demo", [replica.Route], queueTimeoutMs: 20_000);

        var responses = await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < responses.Length; i++)
        {
            Assert.Equal(HttpStatusCode.OK, responses[i].StatusCode);
            Assert.Equal($"late:/v1/completions:request {i}", await responses[i].Content.ReadAsStringAsync());
            responses[i].Dispose();
        }
        Assert.Equal(["0", "1", "2", "3", "4", "5", "6", "7"], connector.Sent);
        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_hold_released_total{cluster=\"demo\"} 8\n", metrics);
        Assert.Contains("shoal_edge_holding_requests{cluster=\"demo\"} 0\n", metrics);
    }

    [Fact]
    public async Task Beyond_the_clusters_hold_limit_a_request_gets_503_with_retry_after_at_once()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.EchoAsync("late");
        SetBounded(edge, maxHeld: 2);
        using var client = edge.Client();
        var held = new[] { client.SendAsync(Numbered(0)), client.SendAsync(Numbered(1)) };
        await Holding(edge, 2);

        using var refused = await client.SendAsync(Numbered(2)).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        var error = (await refused.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error;
        Assert.Equal(ErrorCodes.Unavailable, error.Code);
        Assert.Contains("holds 2 requests", error.Message, StringComparison.Ordinal);
        Assert.False(held[0].IsCompleted || held[1].IsCompleted);

        SetBounded(edge, maxHeld: 2, replica.Route);
        foreach (var response in await Task.WhenAll(held).WaitAsync(TimeSpan.FromSeconds(10)))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }
        var metrics = await edge.MetricsAsync();
        Assert.Contains("shoal_edge_hold_refused_total{cluster=\"demo\"} 1\n", metrics);
        Assert.Contains("shoal_edge_held_requests_total{cluster=\"demo\"} 2\n", metrics);
    }

    [Fact]
    public async Task A_client_that_disconnects_leaves_the_queue_at_once_and_its_slot_takes_the_next_request()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.EchoAsync("late");
        SetBounded(edge, maxHeld: 2);
        using var client = edge.Client();
        using var leaving = new CancellationTokenSource();
        var staying = client.SendAsync(Numbered(0));
        var gone = client.SendAsync(Numbered(1), leaving.Token);
        await Holding(edge, 2);

        await leaving.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gone);
        await Holding(edge, 1);
        var next = client.SendAsync(Numbered(2));
        await Holding(edge, 2);

        SetBounded(edge, maxHeld: 2, replica.Route);
        using var first = await staying.WaitAsync(TimeSpan.FromSeconds(10));
        using var third = await next.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("late:/v1/completions:request 0", await first.Content.ReadAsStringAsync());
        Assert.Equal("late:/v1/completions:request 2", await third.Content.ReadAsStringAsync());
        Assert.Equal(2, replica.Hits);
        Assert.Contains("shoal_edge_hold_refused_total{cluster=\"demo\"} 0\n", await edge.MetricsAsync());
    }

    [Fact]
    public async Task A_held_request_leaves_its_body_unread_until_a_replica_can_take_it()
    {
        await using var edge = await TestEdge.StartAsync();
        await using var replica = await TestReplica.EchoAsync("late");
        edge.SetCluster("demo", [], queueTimeoutMs: 20_000);
        using var client = edge.Client();
        var rest = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var pending = client.PostAsync("/c/demo/v1/completions", new SlowContent("first half, ", "second half", rest.Task));

        // Held before the body is complete: the edge did not wait to buffer it.
        await Holding(edge, 1);
        edge.SetCluster("demo", [replica.Route], queueTimeoutMs: 20_000);
        await Task.Delay(100);
        rest.SetResult();
        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("late:/v1/completions:first half, second half", await response.Content.ReadAsStringAsync());
    }

    /// <summary>A chunked body whose second part is sent only when <c>rest</c> completes.</summary>
    private sealed class SlowContent(string first, string second, Task rest) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(first));
            await stream.FlushAsync();
            await rest;
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(second));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    /// <summary>Direct mode, noting the order in which the edge sends requests (their <c>x-seq</c> header) to replicas.</summary>
    private sealed class RecordingConnector : IUpstreamConnector, IDisposable
    {
        private readonly HttpMessageInvoker _client;
        private readonly List<string> _sent = [];

        public RecordingConnector() => _client = new HttpMessageInvoker(new Recorder(_sent) { InnerHandler = DirectUpstreamConnector.CreateHandler() });

        public IReadOnlyList<string> Sent
        {
            get
            {
                lock (_sent) return [.. _sent];
            }
        }

        public bool IsReachable(RouteDestination destination) => true;

        public (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination) => (_client, destination.Address);

        public void Dispose() => _client.Dispose();

        private sealed class Recorder(List<string> sent) : DelegatingHandler
        {
            protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            {
                lock (sent) sent.Add(request.Headers.TryGetValues("x-seq", out var v) ? v.Single() : "?");
                return base.SendAsync(request, cancellationToken);
            }
        }
    }
}
