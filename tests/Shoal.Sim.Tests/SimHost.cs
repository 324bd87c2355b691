using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;

namespace Shoal.Sim.Tests;

/// <summary>A real simulator on 127.0.0.1 and a free port, with a client pointed at it.</summary>
internal sealed class SimHost : IAsyncDisposable
{
    private SimHost(WebApplication app, HttpClient client)
    {
        App = app;
        Client = client;
    }

    public WebApplication App { get; }

    public HttpClient Client { get; }

    public SimEngine Engine => SimServer.Engine(App);

    /// <summary>Fast settings: no prefill, 0.2 ms per token.</summary>
    public static SimOptions FastOptions() => new()
    {
        PrefillPerToken = TimeSpan.Zero,
        DecodePerToken = TimeSpan.FromMilliseconds(0.2),
    };

    public static async Task<SimHost> StartAsync(SimOptions? options = null, TimeProvider? time = null, Action<int>? exit = null)
    {
        options ??= FastOptions();
        options.Host = "127.0.0.1";
        options.Port = 0;
        var app = SimServer.Build(options, time, exit ?? (code => throw new InvalidOperationException($"unexpected exit({code})")));
        await app.StartAsync();
        var client = new HttpClient { BaseAddress = SimServer.Address(app), Timeout = TimeSpan.FromSeconds(30) };
        return new SimHost(app, client);
    }

    public Task<HttpResponseMessage> ChatAsync(object body, CancellationToken ct = default) =>
        Client.PostAsJsonAsync("/v1/chat/completions", body, ct);

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>The value of one sample in the Prometheus text, e.g. <c>vllm:num_requests_running{model_name="shoal-sim"}</c>.</summary>
    public static double Metric(string metrics, string sample)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(sample + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(sample.Length + 1)..], CultureInfo.InvariantCulture);
            }
        }
        throw new KeyNotFoundException($"no sample '{sample}' in:\n{metrics}");
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
