using System.Net;
using System.Net.Http.Json;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Deploys and updates of images that nodes run as local processes are held to the process
/// runtime's env and args rule, over real HTTP and a real agent WebSocket.
/// </summary>
public sealed class ProcessImageApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<HttpResponseMessage> CreateAsync(CreateClusterRequest request) =>
        _server.Http.PostAsJsonAsync("/v1/clusters", request, ShoalJsonContext.Default.CreateClusterRequest);

    private static async Task<string> ErrorAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error;
        Assert.Equal(ErrorCodes.InvalidArgument, error.Code);
        return error.Message;
    }

    [Fact]
    public async Task The_issues_injections_into_the_sim_are_refused_at_deploy_and_nothing_is_created()
    {
        var response = await CreateAsync(new CreateClusterRequest
        {
            Name = "evil",
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Env = new() { ["PYTHONWARNINGS"] = "ignore::antigravity.Foo", ["BROWSER"] = "/bin/sh -c id #%s" },
            Args = ["@/var/lib/shoal/agent/node.json"],
        });

        var message = await ErrorAsync(response);
        Assert.Contains("env 'PYTHONWARNINGS' is not allowed for image shoal/sim, which runs as a local process on the node", message, StringComparison.Ordinal);
        Assert.Contains("env 'BROWSER' is not allowed", message, StringComparison.Ordinal);
        Assert.Contains("image shoal/sim takes no args", message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await _server.Http.GetAsync("/v1/clusters/evil")).StatusCode);
    }

    [Fact]
    public async Task An_image_a_node_reports_as_a_process_image_is_checked_with_what_its_operator_allowed()
    {
        // Before any node says so, local/python is taken for a container image.
        (await CreateAsync(new CreateClusterRequest { Name = "before", Image = "local/python", Gpu = "rtx-4090", Replicas = 0, Env = new() { ["PYTHONSTARTUP"] = "/tmp/x.py" } })).EnsureSuccessStatusCode();

        var token = await _server.CreateTokenAsync();
        var (agent, status) = await WireAgent.RegisterAsync(_server.AgentUri, token, "node-p");
        Assert.Equal(101, status);
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("node-p", ("rtx-4090", 1)) with { ProcessImages = ["local/python", "shoal/sim"], AllowedEnv = ["PYTHONUNBUFFERED"] });
            await agent.ReceiveAsync<WelcomeMessage>();

            var refused = await ErrorAsync(await CreateAsync(new CreateClusterRequest { Name = "py", Image = "local/python", Gpu = "rtx-4090", Env = new() { ["PYTHONSTARTUP"] = "/tmp/x.py" } }));
            Assert.Contains("env 'PYTHONSTARTUP' is not allowed for image local/python", refused, StringComparison.Ordinal);
            var at = await ErrorAsync(await CreateAsync(new CreateClusterRequest { Name = "py", Image = "local/python", Gpu = "rtx-4090", Args = ["@/var/lib/shoal/agent/node.json"] }));
            Assert.Contains("arg '@/var/lib/shoal/agent/node.json' is not allowed for image local/python", at, StringComparison.Ordinal);

            (await CreateAsync(new CreateClusterRequest { Name = "py", Image = "local/python", Gpu = "rtx-4090", Replicas = 0, Env = new() { ["PYTHONUNBUFFERED"] = "1" } })).EnsureSuccessStatusCode();

            // An update is held to the same rule.
            var update = await _server.Http.PatchAsJsonAsync("/v1/clusters/py", new UpdateClusterRequest { Env = new() { ["LD_PRELOAD"] = "/tmp/x.so" } }, ShoalJsonContext.Default.UpdateClusterRequest);
            Assert.Contains("env 'LD_PRELOAD' is not allowed for image local/python", await ErrorAsync(update), StringComparison.Ordinal);
        }
    }
}
