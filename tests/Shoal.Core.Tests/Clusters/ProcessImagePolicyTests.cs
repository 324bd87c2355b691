using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Core.Tests.Clusters;

public sealed class ProcessImagePolicyTests
{
    private static CreateClusterRequest Sim => new() { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" };

    private static ProcessImagePolicy Policy(string image, params string[] allowed) =>
        new(new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal) { [image] = new HashSet<string>(allowed, StringComparer.Ordinal) });

    [Theory]
    [InlineData("PYTHONWARNINGS")]
    [InlineData("PYTHONPATH")]
    [InlineData("BROWSER")]
    [InlineData("LD_PRELOAD")]
    [InlineData("LD_LIBRARY_PATH")]
    [InlineData("PATH")]
    [InlineData("HOME")]
    [InlineData("SHELL")]
    [InlineData("IFS")]
    [InlineData("DOTNET_STARTUP_HOOKS")]
    [InlineData("CORECLR_PROFILER")]
    [InlineData("PERL5OPT")]
    [InlineData("NODE_OPTIONS")]
    [InlineData("lower_case")]
    public void A_dangerous_env_name_for_the_sim_is_refused_at_deploy_with_a_clear_error(string name)
    {
        var v = ClusterSpecValidator.Validate(Sim with { Env = new() { [name] = "x", ["SIM_SEED"] = "1" } });

        Assert.False(v.IsValid);
        var error = Assert.Single(v.Errors);
        Assert.StartsWith($"env '{name}' is not allowed for image shoal/sim, which runs as a local process on the node", error, StringComparison.Ordinal);
        Assert.Contains($"shoal agent --allow-env {name}", error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_issues_injections_are_refused_together()
    {
        var v = ClusterSpecValidator.Validate(Sim with
        {
            Env = new() { ["PYTHONWARNINGS"] = "ignore::antigravity.x", ["BROWSER"] = "sh -c id #%s" },
            Args = ["@/var/lib/shoal/agent/node.json"],
        });

        Assert.Equal(3, v.Errors.Count);
        Assert.Contains("image shoal/sim takes no args: set the simulator's settings with SIM_* env variables", v.Errors[2], StringComparison.Ordinal);
        var python = ClusterSpecValidator.Validate(Sim with { Image = "local/python", Args = ["ok", "@/var/lib/shoal/agent/node.json"] }, Policy("local/python"));
        var error = Assert.Single(python.Errors);
        Assert.StartsWith("arg '@/var/lib/shoal/agent/node.json' is not allowed for image local/python", error, StringComparison.Ordinal);
        Assert.Contains("response file", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Plain_upper_case_names_and_ordinary_args_pass()
    {
        var v = ClusterSpecValidator.Validate(Sim with { Env = new() { ["SIM_SEED"] = "7", ["HF_TOKEN"] = "t", ["_X1"] = "" } });
        Assert.True(v.IsValid, v.Message);

        var python = ClusterSpecValidator.Validate(Sim with { Image = "local/python", Args = ["serve", "--flag", "a@b"] }, Policy("local/python"));
        Assert.True(python.IsValid, python.Message);
    }

    [Fact]
    public void Container_images_keep_their_env_and_args()
    {
        var v = ClusterSpecValidator.Validate(Sim with { Image = "ghcr.io/org/model:1", Env = new() { ["PYTHONUNBUFFERED"] = "1", ["http_proxy"] = "x" }, Args = ["@config.txt"] });

        Assert.True(v.IsValid, v.Message);
    }

    [Fact]
    public void An_image_a_node_runs_as_a_process_is_held_to_the_rule_and_the_operators_allowance_counts()
    {
        var policy = Policy("local/python", "PYTHONUNBUFFERED");
        var request = Sim with { Image = "local/python", Env = new() { ["PYTHONUNBUFFERED"] = "1" } };

        Assert.True(ClusterSpecValidator.Validate(request, policy).IsValid);
        Assert.False(ClusterSpecValidator.Validate(request with { Env = new() { ["PYTHONSTARTUP"] = "/tmp/x.py" } }, policy).IsValid);
        // Without the node's report the image is taken for a container image.
        Assert.True(ClusterSpecValidator.Validate(request with { Env = new() { ["PYTHONSTARTUP"] = "/tmp/x.py" } }).IsValid);
        // The allowance is per image: the sim does not get it.
        Assert.False(ClusterSpecValidator.Validate(Sim with { Env = new() { ["PYTHONUNBUFFERED"] = "1" } }, policy).IsValid);
    }

    [Fact]
    public void An_update_that_switches_to_a_process_image_or_adds_a_bad_name_is_refused()
    {
        var current = ClusterSpecValidator.Validate(Sim with { Image = "ghcr.io/org/model:1", Env = new() { ["PYTHONUNBUFFERED"] = "1" } }).Value!;

        var toSim = ClusterSpecValidator.ApplyUpdate(current, new UpdateClusterRequest { Image = "shoal/sim" });
        Assert.False(toSim.IsValid);
        Assert.Contains("env 'PYTHONUNBUFFERED' is not allowed for image shoal/sim", toSim.Message, StringComparison.Ordinal);

        var sim = ClusterSpecValidator.Validate(Sim).Value!;
        var bad = ClusterSpecValidator.ApplyUpdate(sim, new UpdateClusterRequest { Env = new() { ["LD_PRELOAD"] = "/tmp/x.so" } });
        Assert.False(bad.IsValid);
        Assert.True(ClusterSpecValidator.ApplyUpdate(sim, new UpdateClusterRequest { Env = new() { ["SIM_SEED"] = "3" } }).IsValid);
    }
}
