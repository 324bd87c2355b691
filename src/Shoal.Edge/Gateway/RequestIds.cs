using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's request ids: <c>req_</c> and a version 7 UUID in 32 lowercase hex digits (what
/// <c>"req_" + Guid.CreateVersion7().ToString("N")</c> gives: 48 bits of Unix milliseconds, then 74
/// cryptographically random bits), made without a call to the OS per request: the random bits come
/// from a per-thread block filled by <see cref="RandomNumberGenerator"/> once per <see cref="IdsPerFill"/>
/// ids (<c>Guid.CreateVersion7</c> reads the OS's random source for each one).
/// </summary>
internal static class RequestIds
{
    public const int IdsPerFill = 256;
    private const int RandomBytesPerId = 10;

    [ThreadStatic]
    private static byte[]? t_random;
    [ThreadStatic]
    private static int t_next;

    /// <summary>A new request id whose time part is <paramref name="at"/>.</summary>
    public static string New(DateTimeOffset at)
    {
        var random = t_random;
        if (random is null || t_next == IdsPerFill)
        {
            random = t_random ??= new byte[IdsPerFill * RandomBytesPerId];
            RandomNumberGenerator.Fill(random);
            t_next = 0;
        }
        Span<byte> uuid = stackalloc byte[16];
        BinaryPrimitives.WriteInt64BigEndian(uuid, at.ToUnixTimeMilliseconds() << 16);
        random.AsSpan(t_next++ * RandomBytesPerId, RandomBytesPerId).CopyTo(uuid[6..]);
        uuid[6] = (byte)(0x70 | (uuid[6] & 0x0F)); // version 7
        uuid[8] = (byte)(0x80 | (uuid[8] & 0x3F)); // variant 10
        return string.Create(36, uuid, static (chars, bytes) =>
        {
            "req_".CopyTo(chars);
            Convert.TryToHexStringLower(bytes, chars[4..], out _);
        });
    }
}
