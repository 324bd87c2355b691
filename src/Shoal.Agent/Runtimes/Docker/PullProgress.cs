using Docker.DotNet.Models;

namespace Shoal.Agent.Runtimes.Docker;

/// <summary>
/// Folds the engine's per-layer pull messages into one percentage: bytes downloaded over bytes
/// to download, counting a layer as done once it is downloaded, extracted or already there.
/// </summary>
public sealed class PullProgressTracker
{
    private readonly Dictionary<string, (long Current, long Total, bool Done)> _layers = new(StringComparer.Ordinal);

    /// <summary>The error the engine reported in the stream, if any.</summary>
    public string? Error { get; private set; }

    /// <summary>Takes in one message; returns the new percentage (0-100), or null when it did not change.</summary>
    public double? Add(JSONMessage message)
    {
        if (message.Error is { } error)
        {
            Error = string.IsNullOrEmpty(error.Message) ? "the engine reported an error" : error.Message;
            return null;
        }
        if (string.IsNullOrEmpty(message.ID) || message.Status is null)
        {
            return null;
        }
        var before = Percent;
        var layer = _layers.GetValueOrDefault(message.ID);
        switch (message.Status)
        {
            case "Pulling fs layer":
            case "Waiting":
                _layers[message.ID] = layer;
                break;
            case "Downloading":
                if (message.Progress is { Total: > 0 } p)
                {
                    var total = p.Total.GetValueOrDefault();
                    _layers[message.ID] = (Math.Min(p.Current.GetValueOrDefault(), total), total, false);
                }
                break;
            case "Download complete":
            case "Verifying Checksum":
            case "Extracting":
            case "Pull complete":
            case "Already exists":
                _layers[message.ID] = (layer.Total, layer.Total, true);
                break;
            default:
                return null;
        }
        var after = Percent;
        return after == before ? null : after;
    }

    /// <summary>Progress so far, 0-100.</summary>
    public double Percent
    {
        get
        {
            if (_layers.Count == 0)
            {
                return 0;
            }
            // Layers whose size is not known yet count as one unit each, done or not.
            double done = 0, total = 0;
            var unknownSize = _layers.Values.Where(l => l.Total <= 0).ToList();
            var known = _layers.Values.Where(l => l.Total > 0).ToList();
            var knownBytes = known.Sum(l => (double)l.Total);
            var perUnknown = known.Count > 0 ? knownBytes / known.Count : 1;
            foreach (var l in known)
            {
                total += l.Total;
                done += l.Done ? l.Total : l.Current;
            }
            foreach (var l in unknownSize)
            {
                total += perUnknown;
                done += l.Done ? perUnknown : 0;
            }
            return total <= 0 ? 0 : Math.Round(100.0 * done / total, 1);
        }
    }
}
