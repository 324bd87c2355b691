using Shoal.Agent.Health;

namespace Shoal.Agent.Tests.Health;

public class PrometheusTextTests
{
    [Fact]
    public void Reads_vllm_gauges_with_labels()
    {
        const string text = """
            # HELP vllm:num_requests_running Number of requests currently running on GPU.
            # TYPE vllm:num_requests_running gauge
            vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B"} 3.0
            # TYPE vllm:num_requests_waiting gauge
            vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B",note="a}b \"q\""} 7
            vllm:num_requests_running_total 99
            vllm:gpu_cache_usage_perc{model_name="x"} 0.5
            """;

        var load = PrometheusText.ReadLoad(text);

        Assert.NotNull(load);
        Assert.Equal(3.0, load.Running);
        Assert.Equal(7.0, load.Waiting);
    }

    [Fact]
    public void Sums_over_label_sets_and_reads_unlabelled_lines_with_timestamps()
    {
        const string text = "vllm:num_requests_running 2 1700000000000\nvllm:num_requests_running{model_name=\"b\"} 1.5\nvllm:num_requests_waiting 0\n";

        var load = PrometheusText.ReadLoad(text);

        Assert.Equal(3.5, load!.Running);
        Assert.Equal(0, load.Waiting);
    }

    [Fact]
    public void No_vllm_metrics_means_no_load()
    {
        Assert.Null(PrometheusText.ReadLoad("# nothing\nhttp_requests_total 5\n"));
    }
}
