using System.Net.Sockets;
using System.Net.WebSockets;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Identity;
using Shoal.Agent.Tests.Runtimes;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Agent.Tests.Connection;

public sealed class AgentHostTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-agent");

    public void Dispose() => _dir.Dispose();

    private AgentOptions Options(string server, string? token = FakeControlPlane.GoodToken) => new()
    {
        Server = server,
        DataDir = _dir.Combine("data"),
        Token = token,
        Name = "node-a",
        SimulateGpus = "rtx-4090:2",
        EnableProcessRuntime = true,
        Runtime = "process",
        ProcessImages = new() { [ProcessRuntimeTests.PythonImage] = ProcessRuntimeTests.PythonServerCommand(_dir.Combine("www")) },
        ReconnectMin = TimeSpan.FromMilliseconds(50),
        ReconnectMax = TimeSpan.FromMilliseconds(200),
        StopGracePeriod = TimeSpan.FromSeconds(5),
    };

    private static Assignment Replica() => new()
    {
        ReplicaId = "py-1",
        Cluster = "web",
        Image = ProcessRuntimeTests.PythonImage,
        Gpu = "rtx-4090",
        GpuIndexes = [1],
        Health = new HealthCheckSpec { IntervalMs = 200 },
    };

    [Fact]
    public async Task Registers_runs_assignments_and_survives_reconnects_and_bad_messages()
    {
        await using var server = await FakeControlPlane.StartAsync();
        using var cts = new CancellationTokenSource();
        var run = AgentHost.RunAsync(Options(server.Url), NullLoggerFactory.Instance, TimeProvider.System, cts.Token);

        // Registration with the token.
        var s1 = await server.NextSessionAsync();
        Assert.Equal(FakeControlPlane.GoodToken, s1.Header(AgentProtocol.ProvisioningTokenHeader));
        Assert.Equal("node-a", s1.Header(AgentProtocol.NodeNameHeader));
        var hello = await s1.ReceiveAsync<HelloMessage>();
        Assert.Equal("node-a", hello.NodeName);
        Assert.Equal(["rtx-4090", "rtx-4090"], hello.Hardware.Gpus.Select(g => g.Type));
        Assert.All(hello.Hardware.Gpus, g => Assert.True(g.Simulated));
        Assert.Contains("process", hello.Runtimes);
        Assert.Contains("shoal/sim", hello.Images);
        Assert.Empty(hello.Replicas);

        await s1.SendAsync(new WelcomeMessage { NodeId = FakeControlPlane.NodeId, NodeSecret = FakeControlPlane.NodeSecret, HeartbeatIntervalMs = 200 });
        var store = new NodeIdentityStore(_dir.Combine("data"));
        var saved = await Poll.UntilAsync(() => File.Exists(store.FilePath) ? store.Load() : null, "node.json");
        Assert.Equal(FakeControlPlane.NodeId, saved.NodeId);
        Assert.Equal(FakeControlPlane.NodeSecret, saved.NodeSecret);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store.FilePath));

        // Assignments: started, acked, reported ready.
        await s1.SendAsync(new AssignmentsMessage { Revision = 7, Replicas = [Replica()] });
        var ack = await s1.ReceiveAsync<AckMessage>();
        Assert.Equal(7, ack.Revision);
        var beat = await s1.ReceiveAsync<HeartbeatMessage>(h => h.Replicas.Any(r => r.State == ReplicaState.Ready));
        var ready = Assert.Single(beat.Replicas);
        Assert.Equal("py-1", ready.ReplicaId);
        Assert.True(ready.Healthy);
        Assert.NotNull(ready.HostPort);
        Assert.Equal(7, beat.AppliedRevision);

        // The server drops the connection: the agent comes back with its saved identity,
        // and the replica kept running (same port, same start time, no restart).
        await s1.CloseAsync();
        var s2 = await server.NextSessionAsync();
        Assert.Equal(FakeControlPlane.NodeId, s2.Header(AgentProtocol.NodeIdHeader));
        Assert.Equal(FakeControlPlane.NodeSecret, s2.Header(AgentProtocol.NodeSecretHeader));
        Assert.Equal("", s2.Header(AgentProtocol.ProvisioningTokenHeader));
        var hello2 = await s2.ReceiveAsync<HelloMessage>();
        Assert.Equal(7, hello2.AppliedRevision);
        var still = Assert.Single(hello2.Replicas);
        Assert.Equal(ReplicaState.Ready, still.State);
        Assert.Equal(ready.HostPort, still.HostPort);
        Assert.Equal(ready.StartedAt, still.StartedAt);
        Assert.Equal(0, still.Restarts);
        await s2.SendAsync(new WelcomeMessage { NodeId = FakeControlPlane.NodeId, HeartbeatIntervalMs = 200 });
        await s2.SendAsync(new AssignmentsMessage { Revision = 7, Replicas = [Replica()] });
        Assert.Equal(7, (await s2.ReceiveAsync<AckMessage>()).Revision);
        var beat2 = await s2.ReceiveAsync<HeartbeatMessage>();
        Assert.Equal(ready.StartedAt, Assert.Single(beat2.Replicas).StartedAt);

        // An oversized message: the agent closes with 1008 and reconnects.
        await s2.SendRawAsync(new string('x', AgentProtocol.MaxMessageBytes + 10));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await s2.Closed.WaitAsync(TimeSpan.FromSeconds(20)));
        var s3 = await server.NextSessionAsync();
        await s3.ReceiveAsync<HelloMessage>();
        await s3.SendAsync(new WelcomeMessage { NodeId = FakeControlPlane.NodeId, HeartbeatIntervalMs = 200 });

        // A malformed one: the same.
        await s3.SendRawAsync("{\"type\":\"assignments\",\"revision\":");
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await s3.Closed.WaitAsync(TimeSpan.FromSeconds(20)));
        var s4 = await server.NextSessionAsync();
        var hello4 = await s4.ReceiveAsync<HelloMessage>();
        Assert.Equal(ready.StartedAt, Assert.Single(hello4.Replicas).StartedAt);
        Assert.False(run.IsCompleted);

        // Shutdown stops the replica and returns without an error.
        await cts.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.False(IsListening(ready.HostPort!.Value));
    }

    [Fact]
    public async Task Refused_token_is_a_clear_configuration_error()
    {
        await using var server = await FakeControlPlane.StartAsync();

        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(Options(server.Url, token: "shoal_pt_wrong"), NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None)
                .WaitAsync(TimeSpan.FromSeconds(20)));

        Assert.Contains("refused the provisioning token", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.Combine("data", "node.json")));
    }

    [Fact]
    public async Task Refused_saved_identity_keeps_retrying()
    {
        await using var server = await FakeControlPlane.StartAsync();
        server.RefuseEveryone = true;
        new NodeIdentityStore(_dir.Combine("data")).Save(new NodeIdentity { NodeId = FakeControlPlane.NodeId, NodeSecret = "stale" });
        using var cts = new CancellationTokenSource();

        var run = AgentHost.RunAsync(Options(server.Url, token: null), NullLoggerFactory.Instance, TimeProvider.System, cts.Token);

        await Poll.UntilAsync(() => server.Attempts.Count >= 3, "three attempts");
        Assert.False(run.IsCompleted);
        Assert.All(server.Attempts, id => Assert.Equal(FakeControlPlane.NodeId, id));
        await cts.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task No_identity_and_no_token_fails_at_once()
    {
        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(Options("http://127.0.0.1:9", token: null), NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None));

        Assert.Contains("no saved identity", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_from_a_file_registers_and_the_data_dir_is_private()
    {
        await using var server = await FakeControlPlane.StartAsync();
        var tokenFile = _dir.Combine("token");
        File.WriteAllText(tokenFile, FakeControlPlane.GoodToken + "\n");
        var options = Options(server.Url, token: null);
        options.TokenFile = tokenFile;
        options.AllowEnv = new HashSet<string>(StringComparer.Ordinal) { "PYTHONUNBUFFERED" };
        using var cts = new CancellationTokenSource();
        var run = AgentHost.RunAsync(options, NullLoggerFactory.Instance, TimeProvider.System, cts.Token);

        var session = await server.NextSessionAsync();
        Assert.Equal(FakeControlPlane.GoodToken, session.Header(AgentProtocol.ProvisioningTokenHeader));
        var hello = await session.ReceiveAsync<HelloMessage>();
        // What the control plane checks deploys against: the images that run as processes, and what the operator allowed.
        Assert.Equal(["shoal/sim", ProcessRuntimeTests.PythonImage], hello.ProcessImages);
        Assert.Equal(["PYTHONUNBUFFERED"], hello.AllowedEnv);
        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(_dir.Combine("data")));
        await cts.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task An_existing_data_dir_is_made_private()
    {
        var data = _dir.Combine("data");
        Directory.CreateDirectory(data);
        File.SetUnixFileMode(data, (UnixFileMode)0x1ed);
        new NodeIdentityStore(data).Save(new NodeIdentity { NodeId = FakeControlPlane.NodeId, NodeSecret = FakeControlPlane.NodeSecret });
        File.SetUnixFileMode(Path.Combine(data, NodeIdentityStore.FileName), (UnixFileMode)0x1a4);
        await using var server = await FakeControlPlane.StartAsync();
        using var cts = new CancellationTokenSource();

        var run = AgentHost.RunAsync(Options(server.Url, token: null), NullLoggerFactory.Instance, TimeProvider.System, cts.Token);
        await server.NextSessionAsync();

        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(data));
        Assert.Equal(PrivateFiles.FileMode, File.GetUnixFileMode(Path.Combine(data, NodeIdentityStore.FileName)));
        await cts.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task Missing_token_file_is_a_clear_error()
    {
        var options = Options("http://127.0.0.1:9", token: null);
        options.TokenFile = _dir.Combine("no-such-token");

        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(options, NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None));

        Assert.Contains("cannot read --token-file", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ftp://x", null, "invalid server address")]
    [InlineData(null, "rtx-9999:1", "not a known GPU type")]
    public async Task Invalid_options_fail_at_once(string? server, string? gpus, string expected)
    {
        var options = Options(server ?? "http://127.0.0.1:9");
        options.SimulateGpus = gpus;

        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(options, NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Host_networking_is_refused_without_the_operators_opt_in()
    {
        var options = Options("http://127.0.0.1:9");
        options.Runtime = "docker";
        options.DockerNetwork = "host";

        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(options, NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None));

        Assert.Contains("shares the host's network with every replica, its loopback included", ex.Message, StringComparison.Ordinal);
        Assert.Contains("--allow-host-network", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1X", "--allow-env '1X' is not an env name")]
    [InlineData("A-B", "--allow-env 'A-B' is not an env name")]
    public async Task A_bad_allowed_env_name_fails_at_once(string name, string expected)
    {
        var options = Options("http://127.0.0.1:9");
        options.AllowEnv = new HashSet<string>(StringComparer.Ordinal) { name };

        var ex = await Assert.ThrowsAsync<AgentConfigurationException>(() =>
            AgentHost.RunAsync(options, NullLoggerFactory.Instance, TimeProvider.System, CancellationToken.None));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static bool IsListening(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
