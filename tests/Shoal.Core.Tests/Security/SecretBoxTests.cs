using System.Text;
using Shoal.Core.Security;

namespace Shoal.Core.Tests.Security;

public sealed class SecretBoxTests
{
    private static SecretBox NewBox() => SecretBox.FromKeyText(SecretBox.NewKeyText());

    [Fact]
    public void A_sealed_value_opens_to_the_original_and_does_not_contain_it()
    {
        var box = NewBox();
        var value = "hf_tökén ✓ with spaces";
        var sealedValue = box.Seal(value);

        Assert.StartsWith(SecretBox.Prefix + box.KeyId + ":", sealedValue, StringComparison.Ordinal);
        Assert.DoesNotContain("hf_", sealedValue, StringComparison.Ordinal);
        Assert.Equal(value, box.Open(sealedValue));
        Assert.Equal("", box.Open(box.Seal("")));
        // A fresh nonce each time: equal values do not look equal at rest.
        Assert.NotEqual(sealedValue, box.Seal(value));
    }

    [Fact]
    public void Another_key_or_a_damaged_value_is_a_clear_error_never_a_wrong_value()
    {
        var box = NewBox();
        var sealedValue = box.Seal("secret");

        var other = Assert.Throws<SecretsKeyException>(() => NewBox().Open(sealedValue));
        Assert.Equal(box.KeyId, other.SealedWith);
        Assert.Contains(box.KeyId, other.Message, StringComparison.Ordinal);

        var bytes = Convert.FromBase64String(sealedValue[(SecretBox.Prefix.Length + box.KeyId.Length + 1)..]);
        bytes[^1] ^= 1;
        var tampered = SecretBox.Prefix + box.KeyId + ":" + Convert.ToBase64String(bytes);
        Assert.Contains("damaged", Assert.Throws<SecretsKeyException>(() => box.Open(tampered)).Message, StringComparison.Ordinal);
        Assert.Throws<SecretsKeyException>(() => box.Open(SecretBox.Prefix + box.KeyId + ":not base64!"));
        Assert.Throws<SecretsKeyException>(() => box.Open("secret"));
    }

    [Fact]
    public void The_same_key_text_gives_the_same_key_and_a_bad_one_is_refused_without_being_echoed()
    {
        var text = SecretBox.NewKeyText();
        Assert.Equal(SecretBox.FromKeyText(text).KeyId, SecretBox.FromKeyText(" " + text + "\n").KeyId);
        Assert.Equal(16, SecretBox.FromKeyText(text).KeyId.Length);
        Assert.DoesNotContain(text, SecretBox.FromKeyText(text).KeyId, StringComparison.Ordinal);

        foreach (var bad in new[] { "", "not-a-key", Convert.ToBase64String(Encoding.ASCII.GetBytes("sixteen bytes!!!")), text + text })
        {
            var error = Assert.Throws<FormatException>(() => SecretBox.FromKeyText(bad));
            Assert.Contains("32 random bytes", error.Message, StringComparison.Ordinal);
            if (bad.Length > 0) Assert.DoesNotContain(bad, error.Message, StringComparison.Ordinal);
        }
    }
}

public sealed class TunnelCredentialTests
{
    [Fact]
    public void The_agent_and_the_control_plane_derive_the_same_credential_which_differs_per_edge_and_reveals_no_secret()
    {
        var secret = Secrets.NewToken("shoal_ns_");
        var hash = Secrets.Hash(secret);

        var forEdge1 = TunnelCredential.FromSecret(secret, "http://edge-1:8080");
        Assert.Equal(forEdge1, TunnelCredential.ForEdge(hash, "http://edge-1:8080"));
        Assert.NotEqual(forEdge1, TunnelCredential.FromSecret(secret, "http://edge-2:8080"));
        Assert.NotEqual(forEdge1, TunnelCredential.FromSecret(Secrets.NewToken("shoal_ns_"), "http://edge-1:8080"));
        Assert.DoesNotContain(secret, forEdge1, StringComparison.Ordinal);
        Assert.DoesNotContain(hash, forEdge1, StringComparison.Ordinal);
        Assert.Equal(Secrets.Hash(forEdge1), TunnelCredential.Verifier(hash, "http://edge-1:8080"));
        Assert.True(Secrets.Matches(forEdge1, TunnelCredential.Verifier(hash, "http://edge-1:8080")));

        var verifiers = TunnelCredential.Verifiers(new Dictionary<string, string> { ["n-1"] = hash, ["n-bad"] = "not-a-hash" }, "http://edge-1:8080");
        Assert.Equal(TunnelCredential.Verifier(hash, "http://edge-1:8080"), Assert.Single(verifiers).Value);
    }
}
