using Shoal.Testing;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// Samples the edge's <c>shoal_edge_upstream_attempts_total</c> every 50 ms and remembers, per
/// replica, when its count last grew: the last moment the edge still sent a request there
/// (successful or not), which response headers alone cannot show.
/// </summary>
internal sealed partial class AttemptWatcher : IAsyncDisposable
{
    private static readonly TimeSpan s_period = TimeSpan.FromMilliseconds(50);
    private readonly HttpClient _http;
    private readonly Stopwatch _clock;
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
    private readonly Dictionary<string, (double Count, double LastGrewMs)> _replicas = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly Task _loop;

    public AttemptWatcher(Uri edge, string metricsKey, Stopwatch clock)
    {
        _clock = clock;
        _http = new HttpClient { BaseAddress = edge, Timeout = TimeSpan.FromSeconds(5) }.WithKey(metricsKey);
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>When the edge last sent an attempt to this replica (ms on the scenario clock), or null if never seen.</summary>
    public double? LastAttemptMs(string replica)
    {
        lock (_lock)
        {
            return _replicas.TryGetValue(replica, out var r) ? r.LastGrewMs : null;
        }
    }

    private async Task LoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var text = await _http.GetStringAsync("/metrics", ct);
                var now = _clock.Elapsed.TotalMilliseconds;
                var totals = new Dictionary<string, double>(StringComparer.Ordinal);
                foreach (Match m in AttemptLine().Matches(text))
                {
                    var replica = m.Groups["replica"].Value;
                    totals[replica] = totals.GetValueOrDefault(replica) + double.Parse(m.Groups["n"].Value, CultureInfo.InvariantCulture);
                }
                lock (_lock)
                {
                    foreach (var (replica, count) in totals)
                    {
                        if (!_replicas.TryGetValue(replica, out var before) || count > before.Count) _replicas[replica] = (count, now);
                    }
                }
                await Task.Delay(s_period, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // The edge is busy or restarting; the next sample catches up.
            }
        }
    }

    [GeneratedRegex("""^shoal_edge_upstream_attempts_total\{[^}]*replica="(?<replica>[^"]+)"[^}]*\} (?<n>[0-9.e+]+)$""", RegexOptions.Multiline)]
    private static partial Regex AttemptLine();

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
        _http.Dispose();
    }
}
