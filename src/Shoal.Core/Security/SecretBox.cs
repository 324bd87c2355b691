using System.Security.Cryptography;
using System.Text;

namespace Shoal.Core.Security;

/// <summary>
/// Seals secret values (secret env, registry passwords) for the store with AES-256-GCM. A sealed
/// value is <c>shoal-sealed:v1:{key id}:{base64(nonce | ciphertext | tag)}</c>; the key id (a hash
/// of the key, not the key) tells which key sealed it, so a wrong or missing key is a clear error
/// rather than garbage. The key itself never goes into the store.
/// </summary>
public sealed class SecretBox
{
    /// <summary>Key length in bytes (AES-256).</summary>
    public const int KeySize = 32;

    /// <summary>What every sealed value starts with.</summary>
    public const string Prefix = "shoal-sealed:v1:";

    private const int NonceSize = 12;
    private const int TagSize = 16;

    private readonly byte[] _key;

    public SecretBox(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize) throw new ArgumentException($"a secrets key is {KeySize} bytes, got {key.Length}", nameof(key));
        _key = key.ToArray();
        KeyId = IdOf(_key);
    }

    /// <summary>Names the key without revealing it: 16 hex digits of a hash of it.</summary>
    public string KeyId { get; }

    /// <summary>A new random key, as the base64 text kept in a key file or <c>SHOAL_SECRETS_KEY</c>.</summary>
    public static string NewKeyText() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeySize));

    /// <summary>The box for a key given as base64 text (32 bytes).</summary>
    /// <exception cref="FormatException">The text is not base64 of 32 bytes; the message never holds the text.</exception>
    public static SecretBox FromKeyText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var buffer = new byte[KeySize + 3];
        if (!Convert.TryFromBase64String(text.Trim(), buffer, out var written) || written != KeySize)
        {
            throw new FormatException($"a secrets key must be {KeySize} random bytes in base64 (44 characters), such as `openssl rand -base64 32` prints");
        }
        return new SecretBox(buffer.AsSpan(0, KeySize));
    }

    /// <summary>True when <paramref name="value"/> is a sealed value (of any key).</summary>
    public static bool IsSealed(string? value) => value is not null && value.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>The id of the key that sealed <paramref name="value"/>, or null when it is not sealed.</summary>
    public static string? SealedWith(string value)
    {
        if (!IsSealed(value)) return null;
        var end = value.IndexOf(':', Prefix.Length);
        return end < 0 ? null : value[Prefix.Length..end];
    }

    /// <summary>Encrypts <paramref name="plaintext"/> with a fresh random nonce.</summary>
    public string Seal(string plaintext)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        var clear = Encoding.UTF8.GetBytes(plaintext);
        var sealedBytes = new byte[NonceSize + clear.Length + TagSize];
        var nonce = sealedBytes.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, TagSize);
        aes.Encrypt(nonce, clear, sealedBytes.AsSpan(NonceSize, clear.Length), sealedBytes.AsSpan(NonceSize + clear.Length), Encoding.ASCII.GetBytes(KeyId));
        CryptographicOperations.ZeroMemory(clear);
        return Prefix + KeyId + ":" + Convert.ToBase64String(sealedBytes);
    }

    /// <summary>Decrypts a value made by <see cref="Seal"/>.</summary>
    /// <exception cref="SecretsKeyException">Sealed with another key, or damaged.</exception>
    public string Open(string sealedValue)
    {
        ArgumentNullException.ThrowIfNull(sealedValue);
        var keyId = SealedWith(sealedValue) ?? throw new SecretsKeyException("a stored secret is malformed (not a sealed value)");
        if (keyId != KeyId)
        {
            throw new SecretsKeyException($"stored secrets were sealed with secrets key {keyId}, but the key in use is {KeyId}", keyId);
        }
        byte[] sealedBytes;
        try
        {
            sealedBytes = Convert.FromBase64String(sealedValue[(Prefix.Length + keyId.Length + 1)..]);
        }
        catch (FormatException)
        {
            throw new SecretsKeyException("a stored secret is damaged (not base64)", keyId);
        }
        if (sealedBytes.Length < NonceSize + TagSize) throw new SecretsKeyException("a stored secret is damaged (too short)", keyId);
        var clear = new byte[sealedBytes.Length - NonceSize - TagSize];
        using var aes = new AesGcm(_key, TagSize);
        try
        {
            aes.Decrypt(sealedBytes.AsSpan(0, NonceSize), sealedBytes.AsSpan(NonceSize, clear.Length), sealedBytes.AsSpan(NonceSize + clear.Length), clear, Encoding.ASCII.GetBytes(KeyId));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SecretsKeyException("a stored secret is damaged (authentication failed)", keyId);
        }
        var text = Encoding.UTF8.GetString(clear);
        CryptographicOperations.ZeroMemory(clear);
        return text;
    }

    private static string IdOf(byte[] key)
    {
        // A keyed hash with a fixed label: the id says which key without helping anyone guess it.
        var id = HMACSHA256.HashData(key, "shoal secrets key id"u8);
        return Convert.ToHexStringLower(id.AsSpan(0, 8));
    }
}

/// <summary>A stored secret cannot be opened: the secrets key is missing, another one, or the value is damaged.</summary>
public sealed class SecretsKeyException : InvalidOperationException
{
    public SecretsKeyException()
    {
    }

    public SecretsKeyException(string message) : base(message)
    {
    }

    public SecretsKeyException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public SecretsKeyException(string message, string? sealedWith) : base(message) => SealedWith = sealedWith;

    /// <summary>The id of the key the value was sealed with, when known.</summary>
    public string? SealedWith { get; }
}
