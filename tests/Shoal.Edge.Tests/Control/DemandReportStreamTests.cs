using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;

namespace Shoal.Edge.Tests.Control;

/// <summary>A standalone edge sends its demand reports up its control WebSocket.</summary>
public sealed class DemandReportStreamTests
{
    [Fact]
    public async Task A_standalone_edge_reports_a_held_request_at_once_then_every_second_then_once_when_demand_ends()
    {
        var received = Channel.CreateUnbounded<(TimeSpan At, EdgeRequest Request)>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var control = builder.Build();
        control.UseWebSockets();
        control.Map(EdgeProtocol.ConnectPath, async (HttpContext context) =>
        {
            using var ws = await context.WebSockets.AcceptWebSocketAsync();
            var table = new RouteTable
            {
                Version = 1,
                Clusters = new(StringComparer.Ordinal) { ["zero"] = TestEdge.Route("zero", [], queueTimeoutMs: 2500) },
            };
            var bytes = JsonSerializer.SerializeToUtf8Bytes<EdgeMessage>(new RoutesMessage { Table = table }, ShoalJsonContext.Default.EdgeMessage);
            await ws.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, context.RequestAborted);
            var buffer = new byte[EdgeProtocol.MaxRequestBytes];
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await ws.ReceiveAsync(buffer.AsMemory(count), context.RequestAborted);
                    if (result.MessageType == WebSocketMessageType.Close) return;
                    count += result.Count;
                }
                while (!result.EndOfMessage);
                received.Writer.TryWrite((clock.Elapsed, JsonSerializer.Deserialize(buffer.AsSpan(0, count), ShoalJsonContext.Default.EdgeRequest)!));
            }
        });
        await control.StartAsync();

        await using var edge = await EdgeServer.StartAsync(new EdgeServerOptions
        {
            Server = control.Urls.First(),
            Key = "shoal_ek_test",
            Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
        }, logging: l => l.ClearProviders());
        await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));
        using var client = new HttpClient { BaseAddress = edge.Address };

        var sent = clock.Elapsed;
        using var response = await client.GetAsync("/c/zero/v1/models");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);

        // Read until the report without clusters that follows the end of demand.
        var reports = new List<(TimeSpan At, DemandReport Report)>();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (reports.Count == 0 || reports[^1].Report.Clusters.Count > 0)
        {
            var (at, request) = await received.Reader.ReadAsync(deadline.Token);
            reports.Add((at, Assert.IsType<DemandReport>(request)));
        }

        var wake = reports.First(r => r.At >= sent);
        Assert.True(wake.Report.Wake, "the first report after the request was not a wake-up");
        Assert.Equal(1, wake.Report.Clusters["zero"].Held);
        Assert.True(wake.At - sent < TimeSpan.FromSeconds(1), $"the wake-up came {wake.At - sent} after the request");
        var periodic = reports.Where(r => !r.Report.Wake && r.Report.Clusters.TryGetValue("zero", out var d) && d.Held == 1).ToList();
        Assert.InRange(periodic.Count, 2, 3);
        Assert.Single(reports, r => r.Report.Wake);
    }
}

public sealed class DemandReportMergeTests
{
    [Fact]
    public void A_newer_report_replaces_an_unsent_one_but_keeps_its_first_served_replicas_and_its_wake_up()
    {
        var t1 = DateTimeOffset.UnixEpoch.AddSeconds(1);
        var t2 = DateTimeOffset.UnixEpoch.AddSeconds(2);
        var older = new DemandReport
        {
            Wake = true,
            Clusters = new(StringComparer.Ordinal) { ["a"] = new ClusterDemand { Held = 1 } },
            FirstServed = new(StringComparer.Ordinal) { ["r1"] = t1 },
        };
        var newer = new DemandReport
        {
            Clusters = new(StringComparer.Ordinal) { ["a"] = new ClusterDemand { Held = 7 } },
            FirstServed = new(StringComparer.Ordinal) { ["r2"] = t2 },
        };

        var merged = Shoal.Edge.Control.EdgeControlClient.Merge(older, newer);
        Assert.True(merged.Wake);
        Assert.Equal(7, merged.Clusters["a"].Held);
        Assert.Equal(new Dictionary<string, DateTimeOffset> { ["r1"] = t1, ["r2"] = t2 }, merged.FirstServed);

        var plain = new DemandReport { Clusters = new(StringComparer.Ordinal) { ["a"] = new ClusterDemand { Held = 2 } } };
        Assert.Same(newer, Shoal.Edge.Control.EdgeControlClient.Merge(plain, newer));
    }
}
