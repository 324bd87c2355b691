using Shoal.Agent.Identity;
using Shoal.Testing;

namespace Shoal.Agent.Tests.Identity;

public class NodeIdentityStoreTests
{
    [Fact]
    public void Saves_and_loads_with_mode_0600()
    {
        using var dir = new TempDirectory();
        var store = new NodeIdentityStore(dir.Combine("nested", "data"));
        var identity = new NodeIdentity { NodeId = "node-1", NodeSecret = "shoal_ns_secret", Server = "http://127.0.0.1:7400" };

        store.Save(identity);

        Assert.Equal(identity, store.Load());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store.FilePath));
        Assert.Equal(["node.json"], Directory.GetFiles(store.DataDir).Select(Path.GetFileName));
        Assert.Contains("\"nodeSecret\"", File.ReadAllText(store.FilePath), StringComparison.Ordinal);
    }

    [Fact]
    public void Overwrites_atomically()
    {
        using var dir = new TempDirectory();
        var store = new NodeIdentityStore(dir.Path);
        store.Save(new NodeIdentity { NodeId = "a", NodeSecret = "1" });

        store.Save(new NodeIdentity { NodeId = "b", NodeSecret = "2" });

        Assert.Equal("b", store.Load()!.NodeId);
        Assert.Single(Directory.GetFiles(dir.Path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store.FilePath));
    }

    [Fact]
    public void No_file_means_no_identity()
    {
        using var dir = new TempDirectory();

        Assert.Null(new NodeIdentityStore(dir.Path).Load());
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("{\"nodeId\":\"x\"}")]
    [InlineData("null")]
    public void A_corrupt_file_is_a_clear_error(string content)
    {
        using var dir = new TempDirectory();
        var store = new NodeIdentityStore(dir.Path);
        File.WriteAllText(store.FilePath, content);

        var ex = Assert.Throws<AgentConfigurationException>(store.Load);

        Assert.Contains(store.FilePath, ex.Message, StringComparison.Ordinal);
    }
}
