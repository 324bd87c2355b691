using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Connection;

namespace Shoal.Agent.Tests.Connection;

public class ExponentialBackoffTests
{
    [Fact]
    public void Doubles_from_min_to_max_without_jitter()
    {
        var backoff = new ExponentialBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));

        var delays = Enumerable.Range(0, 8).Select(_ => backoff.Next().TotalSeconds).ToArray();

        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], delays);
    }

    [Fact]
    public void Reset_starts_again_from_min()
    {
        var backoff = new ExponentialBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));
        backoff.Next();
        backoff.Next();

        backoff.Reset();

        Assert.Equal(TimeSpan.FromSeconds(1), backoff.Next());
    }

    [Fact]
    public void Jitter_stays_within_its_band()
    {
        var draws = new Queue<double>([0.0, 0.999, 0.5]);
        var backoff = new ExponentialBackoff(TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(60), jitter: 0.5, random: draws.Dequeue);

        var first = backoff.Next();
        var second = backoff.Next();
        var third = backoff.Next();

        Assert.Equal(TimeSpan.FromSeconds(4), first);
        Assert.InRange(second.TotalSeconds, 4.0, 4.01);
        Assert.Equal(TimeSpan.FromSeconds(12), third);
    }

    [Fact]
    public void AtMax_does_not_advance_the_sequence()
    {
        var backoff = new ExponentialBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), jitter: 0.5, random: () => 0);

        Assert.Equal(TimeSpan.FromSeconds(30), backoff.AtMax());
        Assert.Equal(TimeSpan.FromSeconds(1), backoff.Next());
    }

    [Fact]
    public void Huge_attempt_counts_do_not_overflow()
    {
        var backoff = new ExponentialBackoff(TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(5));

        for (var i = 0; i < 1000; i++)
        {
            Assert.InRange(backoff.Next(), TimeSpan.Zero, TimeSpan.FromMinutes(5));
        }
    }

    [Fact]
    public async Task Delays_run_on_the_injected_clock()
    {
        var time = new FakeTimeProvider();
        var backoff = new ExponentialBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));
        backoff.Next();
        var delay = backoff.Next();

        var wait = Task.Delay(delay, time);
        time.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.False(wait.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));

        await wait.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Theory]
    [InlineData("http://127.0.0.1:7400", "ws://127.0.0.1:7400/v1/agent/connect")]
    [InlineData("http://127.0.0.1:7400/", "ws://127.0.0.1:7400/v1/agent/connect")]
    [InlineData("https://cp.example.com", "wss://cp.example.com/v1/agent/connect")]
    [InlineData("wss://cp.example.com:8443/shoal/", "wss://cp.example.com:8443/shoal/v1/agent/connect")]
    [InlineData("ws://127.0.0.1:1234", "ws://127.0.0.1:1234/v1/agent/connect")]
    public void Server_address_becomes_the_websocket_url(string server, string expected)
    {
        Assert.Equal(new Uri(expected), ServerAddress.ConnectUri(server));
    }

    [Theory]
    [InlineData("ftp://127.0.0.1")]
    [InlineData("127.0.0.1:7400")]
    [InlineData("not a url")]
    public void Invalid_server_address_is_a_clear_error(string server)
    {
        var ex = Assert.Throws<AgentConfigurationException>(() => ServerAddress.ConnectUri(server));

        Assert.Contains("invalid server address", ex.Message, StringComparison.Ordinal);
    }
}
