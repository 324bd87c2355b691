namespace Shoal.Agent.Identity;

/// <summary>What a node keeps in <c>node.json</c>: who it is and which control plane it belongs to.</summary>
public sealed record NodeIdentity
{
    public required string NodeId { get; init; }
    public required string NodeSecret { get; init; }
    public string? Server { get; init; }
}
