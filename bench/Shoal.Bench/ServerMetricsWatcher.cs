using System.Diagnostics.Tracing;
using System.Globalization;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;

namespace Shoal.Bench;

/// <summary>
/// Reads a server process's Shoal meters (<c>Shoal.Store</c>, <c>Shoal.ControlPlane</c>) once a second over
/// EventPipe, the way <c>dotnet-counters</c> does: counter increments per interval and histogram quantiles per interval.
/// </summary>
internal sealed class ServerMetricsWatcher : IDisposable
{
    private readonly EventPipeSession _session;
    private readonly EventPipeEventSource _source;
    private readonly Task _processing;
    private readonly Lock _lock = new();
    private readonly List<Sample> _samples = [];
    private readonly string _sessionId = Guid.NewGuid().ToString("N");

    /// <summary>One interval's figure of one instrument: a counter's increment, or a histogram's p50/p99 and count.</summary>
    public sealed record Sample(DateTimeOffset At, string Instrument, string Tags, double Value, double P50, double P99, long Count);

    public ServerMetricsWatcher(int pid)
    {
        var client = new DiagnosticsClient(pid);
        var arguments = new Dictionary<string, string>
        {
            ["SessionId"] = _sessionId,
            ["Metrics"] = "Shoal.Store,Shoal.ControlPlane",
            ["RefreshInterval"] = "1",
            ["MaxTimeSeries"] = "1000",
            ["MaxHistograms"] = "100",
        };
        _session = client.StartEventPipeSession([new EventPipeProvider("System.Diagnostics.Metrics", EventLevel.Informational, 0x3, arguments)], requestRundown: false);
        _source = new EventPipeEventSource(_session.EventStream);
        _source.Dynamic.All += OnEvent;
        _processing = Task.Run(() => _source.Process());
    }

    private void OnEvent(TraceEvent e)
    {
        if (e.ProviderName != "System.Diagnostics.Metrics" || e.PayloadByName("sessionId") as string != _sessionId) return;
        var now = DateTimeOffset.UtcNow;
        var instrument = e.PayloadByName("instrumentName") as string ?? "";
        var tags = e.PayloadByName("tags") as string ?? "";
        Sample? sample = e.EventName switch
        {
            "CounterRateValuePublished" => new Sample(now, instrument, tags, Number(e.PayloadByName("rate")), 0, 0, 0),
            "HistogramValuePublished" => Histogram(now, instrument, tags, e.PayloadByName("quantiles") as string ?? "", e.PayloadByName("count")),
            _ => null,
        };
        if (sample is null) return;
        lock (_lock) _samples.Add(sample);
    }

    private static Sample Histogram(DateTimeOffset now, string instrument, string tags, string quantiles, object? count)
    {
        // "0.5=1.2;0.95=3.4;0.99=5.6"
        double p50 = 0, p99 = 0;
        foreach (var part in quantiles.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0) continue;
            var value = Number(part[(eq + 1)..]);
            switch (part[..eq])
            {
                case "0.5": p50 = value; break;
                case "0.99": p99 = value; break;
            }
        }
        return new Sample(now, instrument, tags, 0, p50, p99, count is null ? 0 : Convert.ToInt64(count, CultureInfo.InvariantCulture));
    }

    private static double Number(object? value) => value switch
    {
        string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        IConvertible c => c.ToDouble(CultureInfo.InvariantCulture),
        _ => 0,
    };

    /// <summary>The samples of <paramref name="instrument"/> between two times.</summary>
    public IReadOnlyList<Sample> Between(string instrument, DateTimeOffset from, DateTimeOffset to)
    {
        lock (_lock) return [.. _samples.Where(s => s.Instrument == instrument && s.At >= from && s.At <= to)];
    }

    /// <summary>The sum of a counter's increments (all tag sets) between two times.</summary>
    public double Sum(string instrument, DateTimeOffset from, DateTimeOffset to) => Between(instrument, from, to).Sum(s => s.Value);

    public void Dispose()
    {
        try
        {
            _session.Stop();
        }
        catch (Exception e) when (e is ServerNotAvailableException or EndOfStreamException or IOException or TimeoutException)
        {
            // The process is gone already.
        }
        _processing.Wait(TimeSpan.FromSeconds(5));
        _source.Dispose();
        _session.Dispose();
    }
}
