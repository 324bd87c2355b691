using System.Text.Json.Serialization;

namespace Shoal.Contracts;

/// <summary>
/// A message from the control plane to a standalone edge on <c>/v1/edge/connect</c>, one JSON text
/// frame each, with a <c>type</c> discriminator. Each message replaces what the edge had of that
/// kind, except <see cref="RouteDeltaMessage"/>, which only goes to an edge that asked for deltas
/// (<see cref="EdgeProtocol.FeaturesHeader"/>) and changes the table the edge has.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type", UnknownDerivedTypeHandling = JsonUnknownDerivedTypeHandling.FailSerialization)]
[JsonDerivedType(typeof(RoutesMessage), "routes")]
[JsonDerivedType(typeof(RouteDeltaMessage), "routes-delta")]
[JsonDerivedType(typeof(NodeCredentialsMessage), "nodes")]
[JsonDerivedType(typeof(EndpointKeysMessage), "endpoint-keys")]
[JsonDerivedType(typeof(ProjectGrantsMessage), "project-grants")]
[JsonDerivedType(typeof(UsageAckMessage), "usage-ack")]
public abstract record EdgeMessage;

/// <summary>The whole route table; the edge swaps it in at once.</summary>
public sealed record RoutesMessage : EdgeMessage
{
    public required RouteTable Table { get; init; }
}

/// <summary>
/// What changed since the table of version <see cref="RouteDelta.BaseVersion"/>, which the edge must
/// hold; one that holds another version (or cannot apply it) sends a <see cref="ResyncRequest"/>.
/// </summary>
public sealed record RouteDeltaMessage : EdgeMessage
{
    public required RouteDelta Delta { get; init; }
}

/// <summary>
/// A message from a standalone edge to the control plane, one JSON text frame each, with a
/// <c>type</c> discriminator. A server that predates them reads and ignores them.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type", UnknownDerivedTypeHandling = JsonUnknownDerivedTypeHandling.FailSerialization)]
[JsonDerivedType(typeof(ResyncRequest), "resync")]
[JsonDerivedType(typeof(DemandReport), "demand")]
[JsonDerivedType(typeof(UsageBatch), UsageBatch.Discriminator)]
public abstract record EdgeRequest;

/// <summary>
/// What one edge sees of each cluster's demand, for the autoscaler: sent every second while any
/// cluster has requests in flight or held (and once more when they drop to none), and at once, without
/// waiting for the second, when a request is held for a cluster that has no ready replica (a wake-up).
/// Each report replaces the edge's previous one.
/// </summary>
public sealed record DemandReport : EdgeRequest
{
    /// <summary>Cluster name (as in the route table) → its demand at this edge. Clusters with nothing in flight, held or arrived over the period are left out.</summary>
    public Dictionary<string, ClusterDemand> Clusters { get; init; } = new(StringComparer.Ordinal);
    /// <summary>
    /// Replica id → when it first finished sending a response through this edge (the end of its
    /// warm-up, the fourth part of a cold start); each replica is reported once per edge.
    /// </summary>
    public Dictionary<string, DateTimeOffset>? FirstServed { get; init; }
    /// <summary>True when sent at once because a request is held for a cluster with no ready replica.</summary>
    public bool Wake { get; init; }
}

/// <summary>One cluster's demand at one edge, at the moment of a <see cref="DemandReport"/>.</summary>
public sealed record ClusterDemand
{
    /// <summary>Requests being served by a replica now.</summary>
    public int InFlight { get; init; }
    /// <summary>Requests held waiting for a ready replica.</summary>
    public int Held { get; init; }
    /// <summary>Requests per second that arrived over the last report period.</summary>
    public double Arrivals { get; init; }
}

/// <summary>The edge missed or could not apply a route delta: it wants the whole table again.</summary>
public sealed record ResyncRequest : EdgeRequest
{
    /// <summary>The version of the table the edge holds (for the server's log).</summary>
    public long Version { get; init; }
    /// <summary>Why, in words (for the server's log).</summary>
    public string? Reason { get; init; }
}

/// <summary>Every node's tunnel verifier for this edge, so the edge can authenticate tunnels without asking the server.</summary>
public sealed record NodeCredentialsMessage : EdgeMessage
{
    /// <summary>
    /// Node id → SHA-256 hash (hex) of the node's tunnel credential for this edge's advertised URL
    /// (an HMAC of that URL keyed with the node secret's hash); never anything of the node secret itself.
    /// </summary>
    public Dictionary<string, string> Nodes { get; init; } = new(StringComparer.Ordinal);
}

/// <summary>
/// Every endpoint key that is valid now (not revoked), so the edge checks keys without asking the
/// server; sent on connect and whenever a key is created or revoked. Expiry is checked by the edge.
/// </summary>
public sealed record EndpointKeysMessage : EdgeMessage
{
    /// <summary>SHA-256 hash (hex) of the key → what it grants.</summary>
    public Dictionary<string, EndpointKeyGrant> Keys { get; init; } = new(StringComparer.Ordinal);
}

/// <summary>What an endpoint key may call: its project's endpoints, until it expires; and the gateway's limits and budget of the key itself.</summary>
public sealed record EndpointKeyGrant(string Project, DateTimeOffset? ExpiresAt)
{
    /// <summary>The key's id (for the usage ledger and metrics; never the key).</summary>
    public string? KeyId { get; init; }
    /// <summary>The key's own limits; null: none beyond its project's.</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>The key's own budget; null: none beyond its project's.</summary>
    public BudgetSpec? Budget { get; init; }
    /// <summary>What the key spent in its budget's current period as the control plane's ledger knew at push time (a floor for the edges' counters).</summary>
    public decimal? SpentUsd { get; init; }
}

/// <summary>Paths, headers and limits of the edge's control stream and of tunnels.</summary>
public static class EdgeProtocol
{
    /// <summary>WebSocket on the control plane's API address where standalone edges take their route table.</summary>
    public const string ConnectPath = "/v1/edge/connect";
    /// <summary>Header a standalone edge sends with the URL agents should open tunnels to.</summary>
    public const string AdvertiseHeader = "X-Shoal-Edge-Url";
    /// <summary>
    /// Header a standalone edge sends with the optional parts of the stream it understands, comma
    /// separated; the server sends only what the edge named. An edge that sends none gets whole tables.
    /// </summary>
    public const string FeaturesHeader = "X-Shoal-Edge-Features";
    /// <summary>Feature: after the first whole table, <see cref="RouteDeltaMessage"/>s, answered by <see cref="ResyncRequest"/> on a gap.</summary>
    public const string RouteDeltasFeature = "route-deltas";
    /// <summary>Largest message an edge sends the control plane.</summary>
    public const int MaxRequestBytes = 1024 * 1024;
    /// <summary>
    /// First bytes an agent sends on a tunnel, a plain TCP (or TLS) connection to the edge's own
    /// address: <c>SHOAL-TUNNEL/2 {nodeId} {credential}\n</c>, the credential derived for that edge
    /// (never the node's control-plane secret). The edge answers <see cref="OpenOk"/> or
    /// <c>error: {reason}</c> and closes. Every control line is ASCII, ends with <c>\n</c> and is at
    /// most <see cref="MaxTunnelLineBytes"/> long.
    /// </summary>
    public const string TunnelGreeting = "SHOAL-TUNNEL/2";
    /// <summary>Longest control line on a tunnel, newline included.</summary>
    public const int MaxTunnelLineBytes = 512;
    /// <summary>Largest control message an edge accepts (route tables of large fleets are big).</summary>
    public const int MaxMessageBytes = 64 * 1024 * 1024;
    /// <summary>First line on a claimed tunnel, edge to agent: <c>open {port}</c>.</summary>
    public const string OpenVerb = "open";
    /// <summary>The agent's answer when it has connected to the replica; anything else is an error text.</summary>
    public const string OpenOk = "ok";
}
