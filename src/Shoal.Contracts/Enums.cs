using System.Text.Json.Serialization;

namespace Shoal.Contracts;

/// <summary>The lifecycle of one replica, from waiting for a node to stopped.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ReplicaState>))]
public enum ReplicaState
{
    [JsonStringEnumMemberName("pending")] Pending,
    [JsonStringEnumMemberName("assigned")] Assigned,
    [JsonStringEnumMemberName("pulling")] Pulling,
    [JsonStringEnumMemberName("starting")] Starting,
    [JsonStringEnumMemberName("ready")] Ready,
    [JsonStringEnumMemberName("unhealthy")] Unhealthy,
    [JsonStringEnumMemberName("draining")] Draining,
    [JsonStringEnumMemberName("stopped")] Stopped,
    [JsonStringEnumMemberName("failed")] Failed,
    /// <summary>Ready as its agent last said, but its node is lost (within its grace period) or edges may not reach it: out of routing. Shown by the API only, never stored.</summary>
    [JsonStringEnumMemberName("unreachable")] Unreachable,
}

/// <summary>The state of a node as the control plane sees it.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<NodeState>))]
public enum NodeState
{
    [JsonStringEnumMemberName("ready")] Ready,
    [JsonStringEnumMemberName("disconnected")] Disconnected,
    [JsonStringEnumMemberName("offline")] Offline,
    [JsonStringEnumMemberName("cordoned")] Cordoned,
    [JsonStringEnumMemberName("draining")] Draining,
}

/// <summary>Names and lowercase wire strings for enums, without reflection.</summary>
public static class EnumNames
{
    public static string ToWire(this ReplicaState state) => state switch
    {
        ReplicaState.Pending => "pending",
        ReplicaState.Assigned => "assigned",
        ReplicaState.Pulling => "pulling",
        ReplicaState.Starting => "starting",
        ReplicaState.Ready => "ready",
        ReplicaState.Unhealthy => "unhealthy",
        ReplicaState.Draining => "draining",
        ReplicaState.Stopped => "stopped",
        ReplicaState.Failed => "failed",
        ReplicaState.Unreachable => "unreachable",
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };

    public static string ToWire(this NodeState state) => state switch
    {
        NodeState.Ready => "ready",
        NodeState.Disconnected => "disconnected",
        NodeState.Offline => "offline",
        NodeState.Cordoned => "cordoned",
        NodeState.Draining => "draining",
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };

    public static ReplicaState ParseReplicaState(string value) => value switch
    {
        "pending" => ReplicaState.Pending,
        "assigned" => ReplicaState.Assigned,
        "pulling" => ReplicaState.Pulling,
        "starting" => ReplicaState.Starting,
        "ready" => ReplicaState.Ready,
        "unhealthy" => ReplicaState.Unhealthy,
        "draining" => ReplicaState.Draining,
        "stopped" => ReplicaState.Stopped,
        "failed" => ReplicaState.Failed,
        "unreachable" => ReplicaState.Unreachable,
        _ => throw new FormatException($"unknown replica state '{value}'"),
    };

    public static NodeState ParseNodeState(string value) => value switch
    {
        "ready" => NodeState.Ready,
        "disconnected" => NodeState.Disconnected,
        "offline" => NodeState.Offline,
        "cordoned" => NodeState.Cordoned,
        "draining" => NodeState.Draining,
        _ => throw new FormatException($"unknown node state '{value}'"),
    };
}
