using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Agent.Health;

/// <summary>Reads the vLLM load gauges out of Prometheus text exposition format.</summary>
public static class PrometheusText
{
    public const string Running = "vllm:num_requests_running";
    public const string Waiting = "vllm:num_requests_waiting";

    /// <summary>
    /// The sum of each gauge over its label sets (one per model), or null when neither appears.
    /// </summary>
    public static ReplicaLoad? ReadLoad(string text)
    {
        double running = 0, waiting = 0;
        var found = false;
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.AsSpan().Trim();
            if (line.IsEmpty || line[0] == '#')
            {
                continue;
            }
            var nameEnd = line.IndexOfAny('{', ' ', '\t');
            if (nameEnd <= 0)
            {
                continue;
            }
            var name = line[..nameEnd];
            var isRunning = name.SequenceEqual(Running);
            if (!isRunning && !name.SequenceEqual(Waiting))
            {
                continue;
            }
            var rest = line[nameEnd..];
            if (rest[0] == '{')
            {
                var close = LabelsEnd(rest);
                if (close < 0)
                {
                    continue;
                }
                rest = rest[(close + 1)..];
            }
            rest = rest.TrimStart();
            var space = rest.IndexOfAny(' ', '\t');
            var valueText = space < 0 ? rest : rest[..space];
            if (!double.TryParse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || double.IsNaN(value))
            {
                continue;
            }
            found = true;
            if (isRunning)
            {
                running += value;
            }
            else
            {
                waiting += value;
            }
        }
        return found ? new ReplicaLoad { Running = running, Waiting = waiting } : null;
    }

    // Index of the '}' closing a label set that starts at s[0]; label values may hold '}' and escaped quotes.
    private static int LabelsEnd(ReadOnlySpan<char> s)
    {
        var inQuotes = false;
        for (var i = 1; i < s.Length; i++)
        {
            var c = s[i];
            if (inQuotes)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    inQuotes = false;
                }
            }
            else if (c == '"')
            {
                inQuotes = true;
            }
            else if (c == '}')
            {
                return i;
            }
        }
        return -1;
    }
}
