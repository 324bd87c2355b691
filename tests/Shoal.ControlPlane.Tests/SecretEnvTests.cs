using System.Net.Http.Json;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.Sealing;
using Shoal.Core.Security;

namespace Shoal.ControlPlane.Tests;

/// <summary>Secret env and registry passwords: masked in every answer, in clear only in the assignment of the node running the cluster.</summary>
public sealed class SecretEnvTests : IDisposable
{
    private const string HfToken = "hf_secret-value-9f2";
    private const string RegistryPassword = "registry-password-77";

    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-23T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private readonly TempDirectory _dir = new("shoal-secret-env");

    public void Dispose() => _dir.Dispose();

    private Task<TestServer> StartAsync(Action<ServerOptions>? configure = null) =>
        TestServer.StartAsync(_time, o =>
        {
            o.DataDir = _dir.Path;
            configure?.Invoke(o);
        });

    private static CreateClusterRequest Demo => new()
    {
        Name = "demo",
        Image = "ghcr.io/acme/model:1",
        Gpu = "rtx-4090",
        Env = new() { ["MODE"] = "plain-mode" },
        SecretEnv = new() { ["HF_TOKEN"] = HfToken },
        RegistryAuth = new RegistryCredentials { Username = "acme-bot", Password = RegistryPassword },
    };

    private static async Task<(WireAgent Agent, WelcomeMessage Welcome)> JoinAsync(TestServer server, string name, string gpu)
    {
        var (agent, status) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(new CreateTokenRequest { Labels = ["trusted"] }), name);
        Assert.Equal(101, status);
        await agent!.SendAsync(WireAgent.Hello(name, (gpu, 2)));
        var welcome = await agent.ReceiveAsync<WelcomeMessage>();
        await agent.ReceiveAsync<AssignmentsMessage>();
        return (agent, welcome);
    }

    private static async Task<Assignment> NextAssignmentAsync(WireAgent agent, long generation)
    {
        for (var i = 0; i < 20; i++)
        {
            var message = await agent.ReceiveAsync<AssignmentsMessage>();
            if (message.Replicas.FirstOrDefault(r => r.Generation == generation) is { } found) return found;
        }
        throw new InvalidOperationException($"no assignment of generation {generation}");
    }

    private static async Task<string> TextAsync(HttpResponseMessage response)
    {
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }

    private static void AssertMasked(string json, params string[] secrets)
    {
        foreach (var secret in secrets) Assert.DoesNotContain(secret, json, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Secret_values_are_masked_in_every_answer_and_event_and_reach_only_the_node_running_the_cluster()
    {
        await using var server = await StartAsync();
        var (runner, _) = await JoinAsync(server, "runner", "rtx-4090");
        await using var _1 = runner;
        var (other, otherWelcome) = await JoinAsync(server, "other", "rtx-3090");
        await using var _2 = other;

        var created = await server.Http.PostAsJsonAsync("/v1/clusters", Demo, ShoalJsonContext.Default.CreateClusterRequest);
        Assert.Equal(System.Net.HttpStatusCode.Created, created.StatusCode);
        var createdJson = await TextAsync(created);
        AssertMasked(createdJson, HfToken, RegistryPassword);
        var dto = System.Text.Json.JsonSerializer.Deserialize(createdJson, ShoalJsonContext.Default.ClusterDto)!;
        Assert.Equal(SecretValue.Mask, dto.SecretEnv["HF_TOKEN"]);
        Assert.Equal("plain-mode", dto.Env["MODE"]);
        Assert.False(dto.Env.ContainsKey("HF_TOKEN"));
        Assert.Equal("acme-bot", dto.RegistryUser);

        // The node that runs it gets the clear values over its authenticated connection.
        var assignment = await NextAssignmentAsync(runner, 1);
        Assert.Equal(HfToken, assignment.Env["HF_TOKEN"]);
        Assert.Equal("plain-mode", assignment.Env["MODE"]);
        Assert.Equal(RegistryPassword, assignment.RegistryAuth!.Password);

        // An update that does not send the secret again keeps it.
        var updated = await server.Http.PatchAsJsonAsync("/v1/clusters/demo",
            new UpdateClusterRequest { Env = new() { ["MODE"] = "plain-mode-2" } }, ShoalJsonContext.Default.UpdateClusterRequest);
        AssertMasked(await TextAsync(updated), HfToken, RegistryPassword);
        var second = await NextAssignmentAsync(runner, 2);
        Assert.Equal(HfToken, second.Env["HF_TOKEN"]);
        Assert.Equal("plain-mode-2", second.Env["MODE"]);
        Assert.Equal(RegistryPassword, second.RegistryAuth!.Password);

        // Rotating it: the events name the variable, never a value.
        var rotated = await server.Http.PatchAsJsonAsync("/v1/clusters/demo",
            new UpdateClusterRequest { SecretEnv = new() { ["HF_TOKEN"] = "hf_rotated-31" } }, ShoalJsonContext.Default.UpdateClusterRequest);
        AssertMasked(await TextAsync(rotated), HfToken, "hf_rotated-31");
        var events = await server.Http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        Assert.Contains(events!, e => e.Type == ClusterEventTypes.UpdateStarted && e.Message.Contains("(env +HF_TOKEN)", StringComparison.Ordinal));

        foreach (var path in new[] { "/v1/clusters", "/v1/clusters/demo", "/v1/clusters/demo/status", "/v1/clusters/demo/events", "/v1/nodes" })
        {
            var json = await TextAsync(await server.Http.GetAsync(path));
            AssertMasked(json, HfToken, "hf_rotated-31", RegistryPassword);
        }

        // A node that runs nothing of the cluster is never sent its secrets: its full assignment
        // list, sent afresh on a reconnect, is empty.
        await other.DisposeAsync();
        var (again, status) = await WireAgent.ConnectAsync(server.AgentUri, o =>
        {
            o.SetRequestHeader(AgentProtocol.NodeIdHeader, otherWelcome.NodeId);
            o.SetRequestHeader(AgentProtocol.NodeSecretHeader, otherWelcome.NodeSecret!);
        });
        Assert.Equal(101, status);
        await using var _3 = again;
        await again!.SendAsync(WireAgent.Hello("other", ("rtx-3090", 2)));
        await again.ReceiveAsync<WelcomeMessage>();
        Assert.Empty((await again.ReceiveAsync<AssignmentsMessage>()).Replicas);
    }

    [Fact]
    public async Task A_start_without_the_key_that_sealed_the_store_stops_with_a_clear_error_and_loses_nothing()
    {
        await using (var first = await StartAsync())
        {
            (await first.Http.PostAsJsonAsync("/v1/clusters", Demo, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        }
        var keyFile = Path.Combine(_dir.Path, SecretsKey.FileName);
        var key = File.ReadAllText(keyFile).Trim();

        // The key file is lost: no new key is kept, and the error says what to do.
        File.Delete(keyFile);
        var missing = await Assert.ThrowsAsync<SecretsKeyException>(() => StartAsync());
        Assert.Contains("cluster 'demo'", missing.Message, StringComparison.Ordinal);
        Assert.Contains("no secrets key was found", missing.Message, StringComparison.Ordinal);
        Assert.Contains("nothing in the store was changed", missing.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(keyFile), "a key generated by the failed start was left behind");

        // Another key from the environment: refused as well, and the key is never in the message.
        var otherKey = SecretBox.NewKeyText();
        var wrong = await Assert.ThrowsAsync<SecretsKeyException>(() => StartAsync(o => o.SecretsKey = otherKey));
        Assert.Contains(SecretsKey.EnvironmentVariable, wrong.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(otherKey, wrong.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(key, wrong.Message, StringComparison.Ordinal);

        // A named key file that does not exist is an error, not a fresh key.
        var named = await Assert.ThrowsAsync<ArgumentException>(() => StartAsync(o => o.SecretsKeyFile = Path.Combine(_dir.Path, "nope.key")));
        Assert.Contains("does not exist", named.Message, StringComparison.Ordinal);

        // The right key (here from the environment) opens everything: nothing was lost.
        await using var restored = await StartAsync(o => o.SecretsKey = key);
        var cluster = await restored.Http.GetFromJsonAsync("/v1/clusters/demo", ShoalJsonContext.Default.ClusterDto);
        Assert.Equal(SecretValue.Mask, cluster!.SecretEnv["HF_TOKEN"]);
        var (agent, _) = await JoinAsync(restored, "runner", "rtx-4090");
        await using var _1 = agent;
        var assignment = await NextAssignmentAsync(agent, 1);
        Assert.Equal(HfToken, assignment.Env["HF_TOKEN"]);
        Assert.Equal(RegistryPassword, assignment.RegistryAuth!.Password);
    }

    [Fact]
    public async Task A_malformed_secrets_key_is_refused_without_echoing_it()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => StartAsync(o => o.SecretsKey = "not-a-real-key-value"));
        Assert.Contains(SecretsKey.EnvironmentVariable, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("not-a-real-key-value", error.Message, StringComparison.Ordinal);
    }
}
