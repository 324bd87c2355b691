using System.Globalization;
using System.Text;

namespace Shoal.Sim;

/// <summary>
/// The vLLM metrics the simulator serves on <c>/metrics</c>, with vLLM's names, buckets and
/// <c>model_name</c> label, in the Prometheus text format.
/// </summary>
public sealed class SimMetrics
{
    /// <summary>The content type of the Prometheus text format.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private static readonly double[] s_ttftBuckets =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

    private static readonly double[] s_e2eBuckets =
        [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];

    private readonly string _label;
    private long _promptTokens;
    private long _generationTokens;
    private long _success;

    public SimMetrics(string modelName)
    {
        _label = "model_name=\"" + Escape(modelName) + "\"";
    }

    /// <summary>Time to first token, seconds.</summary>
    public Histogram TimeToFirstToken { get; } = new(s_ttftBuckets);

    /// <summary>End-to-end request latency, seconds.</summary>
    public Histogram RequestLatency { get; } = new(s_e2eBuckets);

    public long PromptTokens => Interlocked.Read(ref _promptTokens);

    public long GenerationTokens => Interlocked.Read(ref _generationTokens);

    public long RequestsSucceeded => Interlocked.Read(ref _success);

    public void AddPromptTokens(int count) => Interlocked.Add(ref _promptTokens, count);

    public void AddGenerationTokens(int count) => Interlocked.Add(ref _generationTokens, count);

    public void RequestSucceeded() => Interlocked.Increment(ref _success);

    /// <summary>Renders every metric; the gauges are given because they live elsewhere.</summary>
    public string Render(double running, double waiting, double cacheUsage)
    {
        var sb = new StringBuilder(4096);
        Gauge(sb, "vllm:num_requests_running", "Number of requests currently running on GPU.", running);
        Gauge(sb, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting);
        Gauge(sb, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", cacheUsage);
        Counter(sb, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", PromptTokens);
        Counter(sb, "vllm:generation_tokens_total", "Number of generation tokens processed.", GenerationTokens);
        sb.Append("# HELP vllm:request_success_total Count of successfully processed requests.\n");
        sb.Append("# TYPE vllm:request_success_total counter\n");
        sb.Append("vllm:request_success_total{finished_reason=\"length\",").Append(_label).Append("} ")
            .Append(Format(RequestsSucceeded)).Append('\n');
        WriteHistogram(sb, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TimeToFirstToken);
        WriteHistogram(sb, "vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", RequestLatency);
        return sb.ToString();
    }

    private void Gauge(StringBuilder sb, string name, string help, double value)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" gauge\n");
        sb.Append(name).Append('{').Append(_label).Append("} ").Append(Format(value)).Append('\n');
    }

    private void Counter(StringBuilder sb, string name, string help, double value)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" counter\n");
        sb.Append(name).Append('{').Append(_label).Append("} ").Append(Format(value)).Append('\n');
    }

    private void WriteHistogram(StringBuilder sb, string name, string help, Histogram histogram)
    {
        var snapshot = histogram.Snapshot();
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" histogram\n");
        long cumulative = 0;
        for (var i = 0; i < histogram.Bounds.Count; i++)
        {
            cumulative += snapshot.Counts[i];
            sb.Append(name).Append("_bucket{").Append(_label).Append(",le=\"").Append(Format(histogram.Bounds[i]))
                .Append("\"} ").Append(Format(cumulative)).Append('\n');
        }
        sb.Append(name).Append("_bucket{").Append(_label).Append(",le=\"+Inf\"} ").Append(Format(snapshot.Count)).Append('\n');
        sb.Append(name).Append("_sum{").Append(_label).Append("} ").Append(Format(snapshot.Sum)).Append('\n');
        sb.Append(name).Append("_count{").Append(_label).Append("} ").Append(Format(snapshot.Count)).Append('\n');
    }

    private static string Format(double value) => value.ToString("0.0##########", CultureInfo.InvariantCulture);

    private static string Escape(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal)
            .Replace("\"", "\\\"", StringComparison.Ordinal)
            .Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>A Prometheus histogram with fixed upper bounds.</summary>
    public sealed class Histogram
    {
        private readonly Lock _lock = new();
        private readonly double[] _bounds;
        private readonly long[] _counts;
        private double _sum;
        private long _count;

        public Histogram(double[] bounds)
        {
            _bounds = bounds;
            _counts = new long[bounds.Length];
        }

        public IReadOnlyList<double> Bounds => _bounds;

        public void Observe(double value)
        {
            lock (_lock)
            {
                var i = Array.FindIndex(_bounds, b => value <= b);
                if (i >= 0)
                {
                    _counts[i]++;
                }
                _sum += value;
                _count++;
            }
        }

        /// <summary>Per-bucket (not cumulative) counts, the sum and the count, taken together.</summary>
        public (long[] Counts, double Sum, long Count) Snapshot()
        {
            lock (_lock)
            {
                return ((long[])_counts.Clone(), _sum, _count);
            }
        }
    }
}
