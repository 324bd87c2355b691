using Shoal.Core.Security;

namespace Shoal.Core.Tests.Security;

public sealed class SecretsTests
{
    [Fact]
    public void Tokens_are_random_prefixed_and_match_only_their_hash()
    {
        var a = Secrets.NewToken("shoal_pt_");
        var b = Secrets.NewToken("shoal_pt_");
        Assert.NotEqual(a, b);
        Assert.StartsWith("shoal_pt_", a, StringComparison.Ordinal);
        Assert.True(a.Length > 40);
        var hash = Secrets.Hash(a);
        Assert.Equal(64, hash.Length);
        Assert.DoesNotContain(a, hash, StringComparison.Ordinal);
        Assert.True(Secrets.Matches(a, hash));
        Assert.False(Secrets.Matches(b, hash));
    }

    [Fact]
    public void Random_ids_use_lower_case_letters_and_digits()
    {
        var id = Secrets.RandomId(12);
        Assert.Equal(12, id.Length);
        Assert.All(id, c => Assert.True(char.IsAsciiDigit(c) || char.IsAsciiLetterLower(c)));
    }
}
