using Shoal.Testing;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace Shoal.Chaos.Tests;

/// <summary>One request of the load: when it started and ended (ms on the scenario clock), and how it went.</summary>
internal sealed record RequestOutcome(double StartMs, double EndMs, int Status, string? Replica, string? Error)
{
    public bool Failed => Error is not null || Status is < 200 or > 299;
}

/// <summary>
/// Steady, bounded load through the edge: a few workers each sending non-streaming chat
/// completions back to back, until stopped, a request cap or a time cap, whichever comes first.
/// </summary>
internal sealed class SteadyLoad : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly Stopwatch _clock;
    private readonly CancellationTokenSource _stop;
    private readonly ConcurrentQueue<RequestOutcome> _outcomes = new();
    private readonly Task[] _workers;
    private readonly int _maxRequests;
    private int _sent;

    public SteadyLoad(Uri edge, string? endpointKey, string cluster, Stopwatch clock, int workers = 4, int maxRequests = 40_000, TimeSpan? maxDuration = null)
    {
        _clock = clock;
        _maxRequests = maxRequests;
        _stop = new CancellationTokenSource(maxDuration ?? TimeSpan.FromSeconds(60));
        _http = new HttpClient { BaseAddress = edge, Timeout = TimeSpan.FromSeconds(30) }.WithKey(endpointKey);
        _workers = Enumerable.Range(0, workers).Select(w => Task.Run(() => WorkerAsync(cluster, w))).ToArray();
    }

    public IReadOnlyCollection<RequestOutcome> Outcomes => _outcomes;

    public int Count => _outcomes.Count;

    private async Task WorkerAsync(string cluster, int worker)
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested && Interlocked.Increment(ref _sent) <= _maxRequests)
        {
            var start = _clock.Elapsed.TotalMilliseconds;
            try
            {
                using var content = new StringContent(
                    $"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"chaos {worker}\"}}],\"max_tokens\":4}}",
                    Encoding.UTF8, "application/json");
                // Not cancelled by the stop token: a request once sent runs to its end, so stopping the load never fails one.
                using var response = await _http.PostAsync($"/c/{cluster}/v1/chat/completions", content, CancellationToken.None);
                var body = await response.Content.ReadAsStringAsync(CancellationToken.None);
                var replica = response.Headers.TryGetValues("x-shoal-replica", out var values) ? values.FirstOrDefault() : null;
                string? error = response.IsSuccessStatusCode && !body.Contains("\"usage\"", StringComparison.Ordinal) ? "no usage in body" : null;
                if (!response.IsSuccessStatusCode) error = $"{(int)response.StatusCode}: {body}";
                _outcomes.Enqueue(new RequestOutcome(start, _clock.Elapsed.TotalMilliseconds, (int)response.StatusCode, replica, error));
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
                _outcomes.Enqueue(new RequestOutcome(start, _clock.Elapsed.TotalMilliseconds, 0, null, e.GetType().Name + ": " + e.Message));
            }
        }
    }

    /// <summary>Waits until at least <paramref name="more"/> further requests completed (the load is flowing).</summary>
    public async Task WaitForMoreAsync(int more, TimeSpan timeout)
    {
        var target = Count + more;
        var deadline = _clock.Elapsed + timeout;
        while (Count < target)
        {
            if (_clock.Elapsed > deadline) throw new TimeoutException($"load stalled: {Count} of {target} requests completed");
            await Task.Delay(10);
        }
    }

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
        _http.Dispose();
    }
}
