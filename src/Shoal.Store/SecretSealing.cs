using Shoal.Core.Clusters;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>
/// Seals a cluster's secret values (secret env, registry password) on their way into the store and
/// opens them on the way out, in its spec and in the earlier generations' specs its rollout keeps.
/// Everything else in the spec stays readable in the store.
/// </summary>
internal static class SecretSealing
{
    /// <summary>Seals every secret value; in memory they are always clear, so every one is sealed afresh.</summary>
    public static ClusterSpec Seal(ClusterSpec spec, SecretBox? box) => Map(spec, value => Box(box).Seal(value));

    public static ClusterRollout Seal(ClusterRollout rollout, SecretBox? box) => Map(rollout, s => Seal(s, box));

    /// <summary>
    /// Opens sealed values. A registry password stored in clear by an older version is taken as
    /// it is (it is sealed the next time the cluster is written).
    /// </summary>
    public static ClusterSpec Open(ClusterSpec spec, SecretBox? box) =>
        Map(spec, value => SecretBox.IsSealed(value) ? OpenOne(value, box) : value);

    public static ClusterRollout Open(ClusterRollout rollout, SecretBox? box) => Map(rollout, s => Open(s, box));

    /// <summary>True when a secret of <paramref name="spec"/> (as read from the store) is still in clear.</summary>
    public static bool HasClearSecret(ClusterSpec spec) =>
        spec.SecretEnv.Values.Any(v => !SecretBox.IsSealed(v)) || spec.RegistryAuth is { } auth && !SecretBox.IsSealed(auth.Password);

    private static string OpenOne(string value, SecretBox? box)
    {
        if (box is null)
        {
            throw new SecretsKeyException($"stored secrets were sealed with secrets key {SecretBox.SealedWith(value)}, but no secrets key is configured", SecretBox.SealedWith(value));
        }
        return box.Open(value);
    }

    private static SecretBox Box(SecretBox? box) =>
        box ?? throw new SecretsKeyException("this store has no secrets key, so it cannot keep secret env or registry credentials");

    private static ClusterSpec Map(ClusterSpec spec, Func<string, string> secret)
    {
        if (!spec.HasSecrets) return spec;
        return spec with
        {
            SecretEnv = spec.SecretEnv.ToDictionary(kv => kv.Key, kv => secret(kv.Value), StringComparer.Ordinal),
            RegistryAuth = spec.RegistryAuth is { } auth ? auth with { Password = secret(auth.Password) } : null,
        };
    }

    private static ClusterRollout Map(ClusterRollout rollout, Func<ClusterSpec, ClusterSpec> spec)
    {
        if (!rollout.Generations.Values.Any(g => g.Spec.HasSecrets)) return rollout;
        return rollout with
        {
            Generations = rollout.Generations.ToDictionary(kv => kv.Key, kv => kv.Value with { Spec = spec(kv.Value.Spec) }),
        };
    }
}
