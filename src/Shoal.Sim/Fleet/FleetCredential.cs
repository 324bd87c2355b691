namespace Shoal.Sim.Fleet;

/// <summary>A simulated node's identity, as kept in the credentials file (one JSON object a line).</summary>
public sealed record FleetCredential
{
    public required string Name { get; init; }
    public required string NodeId { get; init; }
    public required string Secret { get; init; }

    // A record prints every property; the secret must not reach a log line that way.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Name = ").Append(Name).Append(", NodeId = ").Append(NodeId).Append(", Secret = ***");
        return true;
    }
}

/// <summary>A node the simulator dropped on purpose, and when its socket was closed.</summary>
public sealed record DroppedNode(string Name, string NodeId, DateTimeOffset At);
