namespace Shoal.Agent.Runtimes.Docker;

/// <summary>
/// An image reference split the way the engine's pull API wants it: repository, and a tag or a
/// digest (a reference without either means <c>latest</c>, never "every tag").
/// </summary>
public sealed record ImageReference(string Repository, string? Tag, string? Digest)
{
    public static ImageReference Parse(string reference)
    {
        var at = reference.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            var name = Parse(reference[..at]);
            return new ImageReference(name.Repository, name.Tag == "latest" && !reference[..at].EndsWith(":latest", StringComparison.Ordinal) ? null : name.Tag, reference[(at + 1)..]);
        }
        var slash = reference.LastIndexOf('/');
        var colon = reference.LastIndexOf(':');
        return colon > slash
            ? new ImageReference(reference[..colon], reference[(colon + 1)..], null)
            : new ImageReference(reference, "latest", null);
    }

    /// <summary>The registry host of the reference, or <c>docker.io</c>.</summary>
    public string Registry
    {
        get
        {
            var slash = Repository.IndexOf('/', StringComparison.Ordinal);
            if (slash < 0)
            {
                return "docker.io";
            }
            var first = Repository[..slash];
            return first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost"
                ? first
                : "docker.io";
        }
    }

    /// <summary>What the pull API takes as <c>tag</c>: the digest when there is one, else the tag.</summary>
    public string PullTag => Digest ?? Tag ?? "latest";

    public override string ToString() => Digest is not null ? $"{Repository}@{Digest}" : $"{Repository}:{Tag ?? "latest"}";
}
