using System.Security.Cryptography;
using System.Text;

namespace Shoal.Core.Security;

/// <summary>
/// Random tokens and ids. Tokens are shown once and stored only as SHA-256 hashes, compared
/// in constant time.
/// </summary>
public static class Secrets
{
    private const string IdAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

    /// <summary>A new token such as <c>shoal_pt_…</c>: a prefix and 32 random bytes, base64url.</summary>
    public static string NewToken(string prefix) =>
        prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))
            .TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>Lower-case hex SHA-256 of a token, which is what the store keeps.</summary>
    public static string Hash(string token) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>True when <paramref name="token"/> hashes to <paramref name="storedHash"/>; constant time.</summary>
    public static bool Matches(string token, string storedHash) =>
        CryptographicOperations.FixedTimeEquals(
            Encoding.ASCII.GetBytes(Hash(token)),
            Encoding.ASCII.GetBytes(storedHash));

    /// <summary>A random lower-case alphanumeric string, for ids.</summary>
    public static string RandomId(int length) => RandomNumberGenerator.GetString(IdAlphabet, length);
}
