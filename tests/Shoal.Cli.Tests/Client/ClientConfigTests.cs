using Shoal.Cli.Client;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Client;

public sealed class ClientConfigTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-config");
    private readonly Dictionary<string, string> _env = new(StringComparer.Ordinal);

    private string Home => _dir.Combine("home");

    private string? Env(string name) => _env.GetValueOrDefault(name);

    private Uri Resolve(string? flag = null) => ClientConfig.ResolveAddress(flag, Env, Home);

    private static void WriteConfig(string path, string addr)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, $$"""{"addr": "{{addr}}"}""");
    }

    [Fact]
    public void Defaults_to_the_local_server_when_nothing_is_configured()
    {
        Assert.Equal(new Uri("http://127.0.0.1:7400"), Resolve());
    }

    [Fact]
    public void Reads_the_home_config_file()
    {
        WriteConfig(Path.Combine(Home, ".config", "shoal", "config.json"), "http://home:1");
        Assert.Equal(new Uri("http://home:1"), Resolve());
    }

    [Fact]
    public void Xdg_config_home_wins_over_the_home_directory()
    {
        WriteConfig(Path.Combine(Home, ".config", "shoal", "config.json"), "http://home:1");
        _env["XDG_CONFIG_HOME"] = _dir.Combine("xdg");
        WriteConfig(_dir.Combine("xdg", "shoal", "config.json"), "http://xdg:2");
        Assert.Equal(new Uri("http://xdg:2"), Resolve());
    }

    [Fact]
    public void Shoal_config_wins_over_xdg()
    {
        _env["XDG_CONFIG_HOME"] = _dir.Combine("xdg");
        WriteConfig(_dir.Combine("xdg", "shoal", "config.json"), "http://xdg:2");
        _env["SHOAL_CONFIG"] = _dir.Combine("explicit.json");
        WriteConfig(_dir.Combine("explicit.json"), "http://explicit:3");
        Assert.Equal(new Uri("http://explicit:3"), Resolve());
    }

    [Fact]
    public void Shoal_addr_wins_over_the_config_file_and_the_flag_wins_over_both()
    {
        _env["SHOAL_CONFIG"] = _dir.Combine("explicit.json");
        WriteConfig(_dir.Combine("explicit.json"), "http://explicit:3");
        _env["SHOAL_ADDR"] = "http://env:4";
        Assert.Equal(new Uri("http://env:4"), Resolve());
        Assert.Equal(new Uri("https://flag:5"), Resolve("https://flag:5"));
    }

    [Fact]
    public void A_missing_config_file_named_by_shoal_config_falls_back_to_the_default()
    {
        _env["SHOAL_CONFIG"] = _dir.Combine("does-not-exist.json");
        Assert.Equal(new Uri(ClientConfig.DefaultAddress), Resolve());
    }

    [Fact]
    public void A_bare_host_and_port_gets_http()
    {
        _env["SHOAL_ADDR"] = "10.0.0.5:7400";
        Assert.Equal(new Uri("http://10.0.0.5:7400"), Resolve());
    }

    [Theory]
    [InlineData("ftp://x")]
    [InlineData("http://")]
    [InlineData("not an address")]
    public void A_malformed_address_names_its_source(string addr)
    {
        _env["SHOAL_ADDR"] = addr;
        var ex = Assert.Throws<ClientConfigException>(() => Resolve());
        Assert.Contains("SHOAL_ADDR", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_config_file_that_is_not_json_is_reported_with_its_path()
    {
        var path = _dir.Combine("bad.json");
        File.WriteAllText(path, "addr = http://x");
        _env["SHOAL_CONFIG"] = path;
        var ex = Assert.Throws<ClientConfigException>(() => Resolve());
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_creates_the_directory_and_resolve_reads_it_back()
    {
        var path = _dir.Combine("nested", "dir", "config.json");
        Assert.Equal(path, ClientConfig.Save("http://127.0.0.1:9999/", path));
        Assert.Equal("http://127.0.0.1:9999", ClientConfig.Load(path)!.Addr);
        _env["SHOAL_CONFIG"] = path;
        Assert.Equal(new Uri("http://127.0.0.1:9999"), Resolve());
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp-*"));
    }

    [Fact]
    public void Save_overwrites_an_existing_file()
    {
        var path = _dir.Combine("config.json");
        ClientConfig.Save("http://a:1", path);
        ClientConfig.Save("http://b:2", path);
        Assert.Equal("http://b:2", ClientConfig.Load(path)!.Addr);
    }

    [Fact]
    public void Config_path_follows_the_same_order()
    {
        Assert.Equal(Path.Combine(Home, ".config", "shoal", "config.json"), ClientConfig.GetConfigPath(Env, Home));
        _env["XDG_CONFIG_HOME"] = "/xdg";
        Assert.Equal(Path.Combine("/xdg", "shoal", "config.json"), ClientConfig.GetConfigPath(Env, Home));
        _env["SHOAL_CONFIG"] = "/etc/shoal.json";
        Assert.Equal("/etc/shoal.json", ClientConfig.GetConfigPath(Env, Home));
    }

    public void Dispose() => _dir.Dispose();
}
