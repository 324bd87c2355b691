using Microsoft.Extensions.Primitives;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Access;
using Shoal.Core.Security;
using Shoal.Edge.Access;

namespace Shoal.Edge.Tests.Access;

public sealed class EndpointAccessTests
{
    private static readonly ClusterRoute s_private = new() { Cluster = "chat", Project = "alpha" };

    private static (EndpointAccess Access, FakeTimeProvider Time) Make(params (string Key, string Project, DateTimeOffset? Expires)[] keys)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
        var holder = new EndpointKeyHolder();
        holder.Update(keys.ToDictionary(k => Secrets.Hash(k.Key), k => new EndpointKeyGrant(k.Project, k.Expires), StringComparer.Ordinal));
        return (new EndpointAccess(holder, time), time);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Bearer")]
    [InlineData("Bearer ")]
    [InlineData("Basic YWxhZGRpbjpvcGVuc2VzYW1l")]
    [InlineData("Bearer shoal_sk_unknown")]
    public void Missing_malformed_and_unknown_keys_are_unauthenticated(string? header)
    {
        var (access, _) = Make(("shoal_sk_good", "alpha", null));
        Assert.Equal(AccessDecision.Unauthenticated, access.Check(s_private, header is null ? StringValues.Empty : new StringValues(header)));
    }

    [Fact]
    public void A_key_of_the_project_is_allowed_until_it_expires_and_another_projects_key_is_told_nothing_exists()
    {
        var (access, time) = Make(("shoal_sk_good", "alpha", new DateTimeOffset(2026, 12, 4, 12, 1, 0, TimeSpan.Zero)), ("shoal_sk_beta", "beta", null));
        Assert.Equal(AccessDecision.Allowed, access.Check(s_private, "Bearer shoal_sk_good"));
        Assert.Equal(AccessDecision.Allowed, access.Check(s_private, "bearer  shoal_sk_good "));
        Assert.Equal(AccessDecision.OtherProject, access.Check(s_private, "Bearer shoal_sk_beta"));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(AccessDecision.Unauthenticated, access.Check(s_private, "Bearer shoal_sk_good"));
    }

    [Fact]
    public void A_key_seen_before_is_refused_the_moment_its_grant_goes()
    {
        var time = new FakeTimeProvider();
        var holder = new EndpointKeyHolder();
        holder.Update(new Dictionary<string, EndpointKeyGrant> { [Secrets.Hash("shoal_sk_good")] = new("alpha", null) });
        var access = new EndpointAccess(holder, time);
        Assert.Equal(AccessDecision.Allowed, access.Check(s_private, "Bearer shoal_sk_good"));
        Assert.Equal(AccessDecision.Allowed, access.Check(s_private, "Bearer shoal_sk_good"));
        holder.Update(new Dictionary<string, EndpointKeyGrant>());
        Assert.Equal(AccessDecision.Unauthenticated, access.Check(s_private, "Bearer shoal_sk_good"));
        // Many unknown keys neither grow memory past its bound nor stop a good key from working.
        holder.Update(new Dictionary<string, EndpointKeyGrant> { [Secrets.Hash("shoal_sk_good")] = new("alpha", null) });
        for (var i = 0; i < EndpointAccess.HashCacheSize + 10; i++) Assert.Equal(AccessDecision.Unauthenticated, access.Check(s_private, $"Bearer shoal_sk_{i}"));
        Assert.Equal(AccessDecision.Allowed, access.Check(s_private, "Bearer shoal_sk_good"));
    }

    [Fact]
    public void Two_authorization_headers_are_refused_and_public_clusters_need_no_key()
    {
        var (access, _) = Make(("shoal_sk_good", "alpha", null));
        Assert.Equal(AccessDecision.Unauthenticated, access.Check(s_private, new StringValues(["Bearer shoal_sk_good", "Bearer shoal_sk_good"])));
        Assert.Equal(AccessDecision.Public, access.Check(s_private with { Public = true }, StringValues.Empty));
    }
}
