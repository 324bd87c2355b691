using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Shoal.Core.Security;

/// <summary>
/// The credential a node presents on its tunnels to one edge: derived per edge, never the node's
/// control-plane secret. It is an HMAC of the edge's URL (as the control plane lists it to agents)
/// keyed with the SHA-256 of the node secret, so the agent (which has the secret) and the control
/// plane (which keeps only that hash) both derive it, while an edge, or anyone reading an http
/// edge's traffic, learns a credential good for that edge alone. Edges are given only the hash of
/// their own credential per node (<see cref="Verifier"/>).
/// </summary>
public static class TunnelCredential
{
    private const string Label = "shoal-tunnel/2 ";

    /// <summary>The node's credential for the edge at <paramref name="edgeUrl"/>, from the hash of its secret.</summary>
    public static string ForEdge(string nodeSecretHash, string edgeUrl)
    {
        ArgumentNullException.ThrowIfNull(nodeSecretHash);
        ArgumentNullException.ThrowIfNull(edgeUrl);
        var key = Convert.FromHexString(nodeSecretHash);
        var mac = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(Label + edgeUrl));
        return "shoal_tc_" + Base64Url.EncodeToString(mac);
    }

    /// <summary>The node's credential for the edge at <paramref name="edgeUrl"/>, from its secret (what the agent holds).</summary>
    public static string FromSecret(string nodeSecret, string edgeUrl) => ForEdge(Secrets.Hash(nodeSecret), edgeUrl);

    /// <summary>What the edge at <paramref name="edgeUrl"/> checks a node's tunnels against: the SHA-256 of its credential.</summary>
    public static string Verifier(string nodeSecretHash, string edgeUrl) => Secrets.Hash(ForEdge(nodeSecretHash, edgeUrl));

    /// <summary>Node id → <see cref="Verifier"/> for one edge, from node id → secret hash; malformed hashes are left out.</summary>
    public static Dictionary<string, string> Verifiers(IReadOnlyDictionary<string, string> nodeSecretHashes, string edgeUrl)
    {
        ArgumentNullException.ThrowIfNull(nodeSecretHashes);
        var verifiers = new Dictionary<string, string>(nodeSecretHashes.Count, StringComparer.Ordinal);
        foreach (var (nodeId, hash) in nodeSecretHashes)
        {
            if (hash.Length == 64 && hash.All(char.IsAsciiHexDigit)) verifiers[nodeId] = Verifier(hash, edgeUrl);
        }
        return verifiers;
    }
}
