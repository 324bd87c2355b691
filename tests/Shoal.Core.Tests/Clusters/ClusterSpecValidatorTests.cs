using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Core.Tests.Clusters;

public sealed class ClusterSpecValidatorTests
{
    private static CreateClusterRequest Valid => new() { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" };

    [Fact]
    public void Defaults_are_filled_in()
    {
        var v = ClusterSpecValidator.Validate(Valid);
        Assert.True(v.IsValid, v.Message);
        Assert.Equal(1, v.Value!.Replicas);
        Assert.Equal(1, v.Value.GpuCount);
        Assert.Equal(8000, v.Value.Port);
        Assert.Equal("/health", v.Value.Health.Path);
        Assert.Equal(BalancingPolicy.LeastOutstanding, v.Value.Routing);
        Assert.Equal(30, v.Value.QueueTimeoutSeconds);
        Assert.Null(v.Value.FirstByteTimeoutSeconds);
    }

    [Fact]
    public void Models_are_checked_sorted_deduplicated_and_replaced_or_cleared_by_updates()
    {
        var v = ClusterSpecValidator.Validate(Valid with { Models = ["b-model", "meta-llama/Llama-3.1-8B-Instruct", "b-model"] });
        Assert.True(v.IsValid, v.Message);
        Assert.Equal(["b-model", "meta-llama/Llama-3.1-8B-Instruct"], v.Value!.Models!);
        Assert.Null(ClusterSpecValidator.Validate(Valid with { Models = [] }).Value!.Models);
        Assert.Null(ClusterSpecValidator.Validate(Valid).Value!.Models);

        foreach (var bad in new[] { "", "has space", "tab\t", new string('m', ClusterSpec.MaxModelNameLength + 1) })
        {
            var refused = ClusterSpecValidator.Validate(Valid with { Models = [bad] });
            Assert.False(refused.IsValid);
            Assert.Contains(refused.Errors, e => e.Contains("model name", StringComparison.Ordinal));
        }
        var tooMany = ClusterSpecValidator.Validate(Valid with { Models = [.. Enumerable.Range(0, ClusterSpec.MaxModels + 1).Select(i => $"m{i}")] });
        Assert.Contains(tooMany.Errors, e => e.Contains($"at most {ClusterSpec.MaxModels} models", StringComparison.Ordinal));

        // Kept by updates that do not name them, replaced by ones that do, cleared by an empty list; not a new runtime.
        Assert.Equal(v.Value.Models, ClusterSpecValidator.ApplyUpdate(v.Value, new UpdateClusterRequest { Replicas = 2 }).Value!.Models);
        var replaced = ClusterSpecValidator.ApplyUpdate(v.Value, new UpdateClusterRequest { Models = ["c"] }).Value!;
        Assert.Equal(["c"], replaced.Models!);
        Assert.True(ClusterSpec.SameRuntime(v.Value, replaced));
        Assert.Null(ClusterSpecValidator.ApplyUpdate(v.Value, new UpdateClusterRequest { Models = [] }).Value!.Models);
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(5, true)]
    [InlineData(3600, true)]
    [InlineData(-1, false)]
    [InlineData(3601, false)]
    public void The_first_byte_timeout_is_checked_and_kept_by_updates_that_do_not_name_it(int seconds, bool valid)
    {
        var v = ClusterSpecValidator.Validate(Valid with { FirstByteTimeoutSeconds = seconds });
        Assert.Equal(valid, v.IsValid);
        if (!valid)
        {
            Assert.Contains(v.Errors, e => e.Contains("firstByteTimeoutSeconds", StringComparison.Ordinal));
            return;
        }
        Assert.Equal(seconds, v.Value!.FirstByteTimeoutSeconds);
        Assert.Equal(seconds, ClusterSpecValidator.ApplyUpdate(v.Value, new UpdateClusterRequest { Replicas = 2 }).Value!.FirstByteTimeoutSeconds);
        Assert.Equal(7, ClusterSpecValidator.ApplyUpdate(v.Value, new UpdateClusterRequest { FirstByteTimeoutSeconds = 7 }).Value!.FirstByteTimeoutSeconds);
    }

    [Theory]
    [InlineData("round-robin", 0, true)]
    [InlineData("least-outstanding", 300, true)]
    [InlineData("random", 30, false)]
    [InlineData("least-outstanding", -1, false)]
    [InlineData("least-outstanding", 301, false)]
    public void Routing_and_queue_timeout_are_checked(string routing, int queueTimeout, bool valid)
    {
        var v = ClusterSpecValidator.Validate(Valid with { Routing = routing, QueueTimeoutSeconds = queueTimeout });
        Assert.Equal(valid, v.IsValid);
        if (valid) Assert.Equal((routing, queueTimeout), (v.Value!.Routing, v.Value.QueueTimeoutSeconds));
        else Assert.Contains(v.Errors, e => e.Contains("routing", StringComparison.Ordinal) || e.Contains("queueTimeoutSeconds", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("a")]
    [InlineData("demo-2")]
    [InlineData("llama-3-70b")]
    public void Dns_labels_are_valid_names(string name) => Assert.True(ClusterSpecValidator.IsValidName(name));

    [Theory]
    [InlineData("")]
    [InlineData("Demo")]
    [InlineData("1demo")]
    [InlineData("demo-")]
    [InlineData("de_mo")]
    [InlineData("de.mo")]
    public void Other_names_are_invalid(string name) => Assert.False(ClusterSpecValidator.IsValidName(name));

    [Fact]
    public void Names_longer_than_63_are_invalid() => Assert.False(ClusterSpecValidator.IsValidName(new string('a', 64)));

    [Theory]
    [InlineData("shoal/sim")]
    [InlineData("vllm/vllm-openai:v0.6.3")]
    [InlineData("ghcr.io/org/model:1.0")]
    [InlineData("localhost:5000/team/model_server:latest")]
    [InlineData("busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    public void Image_references_are_accepted(string image) => Assert.True(ClusterSpecValidator.IsValidImage(image));

    [Theory]
    [InlineData("UPPER/case")]
    [InlineData("has space")]
    [InlineData("trailing/")]
    [InlineData("a:b:c")]
    [InlineData("name@sha256:short")]
    public void Bad_image_references_are_rejected(string image) => Assert.False(ClusterSpecValidator.IsValidImage(image));

    [Fact]
    public void Every_problem_is_reported_at_once()
    {
        var v = ClusterSpecValidator.Validate(new CreateClusterRequest { Name = "X", Gpu = "gtx-9999", Replicas = 5000, Port = 0, GpuCount = 0 });
        Assert.False(v.IsValid);
        Assert.Contains(v.Errors, e => e.Contains("DNS label", StringComparison.Ordinal));
        Assert.Contains(v.Errors, e => e.Contains("image is required", StringComparison.Ordinal));
        Assert.Contains(v.Errors, e => e.Contains("unknown gpu type 'gtx-9999'", StringComparison.Ordinal));
        Assert.Contains(v.Errors, e => e.Contains("replicas must be between 0 and 1000", StringComparison.Ordinal));
        Assert.Contains(v.Errors, e => e.Contains("port", StringComparison.Ordinal));
        Assert.Contains(v.Errors, e => e.Contains("gpuCount", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("1ABC")]
    [InlineData("A-B")]
    [InlineData("")]
    public void Bad_env_names_are_rejected(string name)
    {
        var v = ClusterSpecValidator.Validate(Valid with { Env = new() { [name] = "x" } });
        Assert.False(v.IsValid);
        Assert.Contains("env name", v.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Health_path_must_be_absolute()
    {
        var v = ClusterSpecValidator.Validate(Valid with { Health = new HealthCheckSpec { Path = "health" } });
        Assert.False(v.IsValid);
        Assert.Contains("health.path", v.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Zero_replicas_is_allowed() => Assert.True(ClusterSpecValidator.Validate(Valid with { Replicas = 0 }).IsValid);

    [Fact]
    public void An_update_merges_env_keeps_the_rest_and_only_runtime_changes_count_as_a_new_generation()
    {
        var current = ClusterSpecValidator.Validate(Valid with { Image = "shoal/model", Env = new() { ["A"] = "1", ["B"] = "2" }, Args = ["--x"], Replicas = 2 }).Value!;

        var updated = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Env = new() { ["C"] = "3" }, UnsetEnv = ["B"], Image = "shoal/sim:2" });

        Assert.True(updated.IsValid, updated.Message);
        Assert.Equal(new Dictionary<string, string> { ["A"] = "1", ["C"] = "3" }, updated.Value!.Env);
        Assert.Equal(["--x"], updated.Value.Args);
        Assert.Equal(2, updated.Value.Replicas);
        Assert.Equal("shoal/sim:2", updated.Value.Image);
        Assert.False(ClusterSpec.SameRuntime(current, updated.Value));

        var scaled = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Replicas = 5, DrainTimeoutSeconds = 0, Routing = BalancingPolicy.RoundRobin });
        Assert.True(ClusterSpec.SameRuntime(current, scaled.Value!));
        Assert.True(ClusterSpec.SameRuntime(current, current with { Env = new(current.Env), Args = [.. current.Args] }));
        Assert.False(ClusterSpec.SameRuntime(current, current with { Health = current.Health with { InitialDelayMs = 1000 } }));
    }

    [Fact]
    public void Secret_env_is_checked_like_env_without_quoting_values_and_a_name_is_plain_or_secret_not_both()
    {
        var ok = ClusterSpecValidator.Validate(Valid with { Env = new() { ["MODE"] = "fast" }, SecretEnv = new() { ["HF_TOKEN"] = "hf_x" } });
        Assert.True(ok.IsValid, ok.Message);
        Assert.Equal("hf_x", ok.Value!.SecretEnv["HF_TOKEN"]);
        Assert.False(ok.Value.Env.ContainsKey("HF_TOKEN"));
        Assert.Equal(new Dictionary<string, string> { ["MODE"] = "fast", ["HF_TOKEN"] = "hf_x" }, ok.Value.ReplicaEnv());

        var both = ClusterSpecValidator.Validate(Valid with { Env = new() { ["HF_TOKEN"] = "a" }, SecretEnv = new() { ["HF_TOKEN"] = "hf_both" } });
        Assert.Contains("env 'HF_TOKEN' is given both as plain and as secret env", both.Message, StringComparison.Ordinal);

        var tooLong = new string('s', ClusterSpecValidator.MaxEnvValueLength + 1);
        var bad = ClusterSpecValidator.Validate(Valid with { SecretEnv = new() { ["1BAD"] = "hf_value", ["LONG"] = tooLong } });
        Assert.Contains("secretEnv name '1BAD' is invalid", bad.Message, StringComparison.Ordinal);
        Assert.Contains("secretEnv 'LONG' is longer than", bad.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hf_value", bad.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(tooLong, bad.Message, StringComparison.Ordinal);

        var many = Enumerable.Range(0, ClusterSpecValidator.MaxEnvVars).ToDictionary(i => $"P{i}", _ => "v");
        var tooMany = ClusterSpecValidator.Validate(Valid with { Env = many, SecretEnv = new() { ["S"] = "v" } });
        Assert.Contains("plain and secret together", tooMany.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_update_keeps_secret_env_not_sent_again_and_moves_a_name_between_plain_and_secret()
    {
        var current = ClusterSpecValidator.Validate(Valid with
        {
            Env = new() { ["MODE"] = "fast", ["LEVEL"] = "1" },
            SecretEnv = new() { ["HF_TOKEN"] = "hf_old", ["DB"] = "db-secret" },
            RegistryAuth = new RegistryCredentials { Username = "bot", Password = "registry-secret" },
        }).Value!;

        // Not sent again: kept, and the same runtime (no new generation for a scale).
        var scaled = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Replicas = 3 }).Value!;
        Assert.Equal(current.SecretEnv, scaled.SecretEnv);
        Assert.Equal(current.RegistryAuth, scaled.RegistryAuth);
        Assert.True(ClusterSpec.SameRuntime(current, scaled));

        var updated = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest
        {
            Env = new() { ["DB"] = "now-plain" },
            SecretEnv = new() { ["HF_TOKEN"] = "hf_new", ["MODE"] = "now-secret" },
            UnsetEnv = ["LEVEL"],
        });
        Assert.True(updated.IsValid, updated.Message);
        Assert.Equal(new Dictionary<string, string> { ["DB"] = "now-plain" }, updated.Value!.Env);
        Assert.Equal(new Dictionary<string, string> { ["HF_TOKEN"] = "hf_new", ["MODE"] = "now-secret" }, updated.Value.SecretEnv);
        Assert.Equal(current.RegistryAuth, updated.Value.RegistryAuth);
        Assert.False(ClusterSpec.SameRuntime(current, updated.Value));
        // A changed secret value alone is a new generation too.
        Assert.False(ClusterSpec.SameRuntime(current, ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { SecretEnv = new() { ["HF_TOKEN"] = "hf_rotated" } }).Value!));

        var unsetSecret = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { UnsetEnv = ["HF_TOKEN"] }).Value!;
        Assert.False(unsetSecret.SecretEnv.ContainsKey("HF_TOKEN"));

        Assert.Contains("both set and unset", ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { SecretEnv = new() { ["X"] = "1" }, UnsetEnv = ["X"] }).Message, StringComparison.Ordinal);
        Assert.Contains("both as plain and as secret", ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Env = new() { ["X"] = "1" }, SecretEnv = new() { ["X"] = "2" } }).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Registry_credentials_print_without_their_password()
    {
        var spec = ClusterSpecValidator.Validate(Valid with { RegistryAuth = new RegistryCredentials { Username = "bot", Password = "registry-secret" } }).Value!;
        Assert.DoesNotContain("registry-secret", spec.RegistryAuth!.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("registry-secret", spec.ToString(), StringComparison.Ordinal);
        Assert.Contains("Username = bot", spec.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(-1, 120, 0, "drainTimeoutSeconds must be between 0 and 3600")]
    [InlineData(30, 5, 0, "progressDeadlineSeconds must be between 10 and 86400")]
    [InlineData(30, 60, 60_000, "progressDeadlineSeconds (60) must be longer than health.initialDelayMs (60000 ms)")]
    [InlineData(30, 120, -5, "health.initialDelayMs must be between 0 and 3600000")]
    public void Drain_timeout_progress_deadline_and_initial_delay_are_checked(int drain, int deadline, int initialDelayMs, string expected)
    {
        var v = ClusterSpecValidator.Validate(Valid with
        {
            DrainTimeoutSeconds = drain,
            ProgressDeadlineSeconds = deadline,
            Health = new HealthCheckSpec { InitialDelayMs = initialDelayMs },
        });
        Assert.False(v.IsValid);
        Assert.Contains(expected, v.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cluster_with_secrets_asks_for_trusted_nodes_unless_its_spec_names_other_labels_or_none()
    {
        var plain = ClusterSpecValidator.Validate(Valid).Value!;
        Assert.False(plain.HasSecrets);
        Assert.Empty(plain.RequiredNodeLabels);

        var auth = new RegistryCredentials { Username = "bot", Password = "pw" };
        var secret = ClusterSpecValidator.Validate(Valid with { RegistryAuth = auth }).Value!;
        Assert.True(secret.HasSecrets);
        Assert.Equal(["trusted"], secret.RequiredNodeLabels);

        Assert.Equal(["eu", "gpu-farm"], ClusterSpecValidator.Validate(Valid with { RegistryAuth = auth, NodeLabels = ["gpu-farm", "eu", "eu"] }).Value!.RequiredNodeLabels);
        Assert.Empty(ClusterSpecValidator.Validate(Valid with { RegistryAuth = auth, NodeLabels = [] }).Value!.RequiredNodeLabels);
        Assert.Equal(["trusted"], ClusterSpecValidator.Validate(Valid with { NodeLabels = ["trusted"] }).Value!.RequiredNodeLabels);

        // An update keeps them.
        var updated = ClusterSpecValidator.ApplyUpdate(secret with { NodeLabels = ["eu"] }, new UpdateClusterRequest { Replicas = 3 }).Value!;
        Assert.Equal(["eu"], updated.RequiredNodeLabels);
    }

    [Theory]
    [InlineData("Trusted")]
    [InlineData("has space")]
    [InlineData("")]
    public void Bad_node_labels_are_rejected(string label)
    {
        var result = ClusterSpecValidator.Validate(Valid with { NodeLabels = [label] });
        Assert.False(result.IsValid);
        Assert.Contains("nodeLabels", result.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(0.15, true)]
    [InlineData(10000, true)]
    [InlineData(-0.01, false)]
    [InlineData(10000.01, false)]
    public void Price_parts_are_checked(double usd, bool valid)
    {
        var value = (decimal)usd;
        foreach (var price in new[] { new ClusterPrice { InputPerMillion = value }, new ClusterPrice { OutputPerMillion = value }, new ClusterPrice { PerGpuSecond = value } })
        {
            var v = ClusterSpecValidator.Validate(Valid with { Price = price });
            Assert.Equal(valid, v.IsValid);
            if (!valid) Assert.Contains("must be between 0 and 10000 USD", v.Message, StringComparison.Ordinal);
        }
        Assert.Null(ClusterSpecValidator.Validate(Valid with { Price = new ClusterPrice() }).Value!.Price);
    }

    [Fact]
    public void An_update_sets_the_price_parts_it_names_keeps_the_others_and_is_no_new_generation()
    {
        var current = ClusterSpecValidator.Validate(Valid with { Price = new ClusterPrice { InputPerMillion = 1m, OutputPerMillion = 2m } }).Value!;
        var updated = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Price = new ClusterPrice { OutputPerMillion = 3m, PerGpuSecond = 0.001m } });
        Assert.True(updated.IsValid, updated.Message);
        Assert.Equal(new ClusterPrice { InputPerMillion = 1m, OutputPerMillion = 3m, PerGpuSecond = 0.001m }, updated.Value!.Price);
        Assert.True(ClusterSpec.SameRuntime(current, updated.Value));
        Assert.Equal(current.Price, ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Replicas = 2 }).Value!.Price);
        Assert.False(ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Price = new ClusterPrice { InputPerMillion = -1 } }).IsValid);
    }
}
