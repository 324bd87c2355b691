namespace Shoal.Contracts;

/// <summary>
/// The roles of API keys. <see cref="Operator"/> is the whole installation; the others are scoped to
/// one project; <see cref="Endpoint"/> keys call a project's endpoints at the edge and nothing on the
/// management API.
/// </summary>
public static class ApiKeyRoles
{
    /// <summary>Everything: nodes, provisioning tokens, projects, every project's clusters and keys.</summary>
    public const string Operator = "operator";
    /// <summary>A project's keys (any project role) and everything an admin may do.</summary>
    public const string Owner = "owner";
    /// <summary>A project's clusters (delete included) and its endpoint keys, and everything a member may do.</summary>
    public const string Admin = "admin";
    /// <summary>Deploy, scale, update and read the logs of the project's clusters.</summary>
    public const string Member = "member";
    /// <summary>Read the project's clusters, their status and events.</summary>
    public const string Viewer = "viewer";
    /// <summary>Inference only: the project's endpoints at the edge.</summary>
    public const string Endpoint = "endpoint";

    /// <summary>Management roles from the least to the most powerful (operator last).</summary>
    public static readonly string[] Management = [Viewer, Member, Admin, Owner, Operator];

    public static bool IsKnown(string? role) => role is Operator or Owner or Admin or Member or Viewer or Endpoint;

    /// <summary>Rank of a management role (viewer 1 … operator 5); 0 for endpoint keys and unknown roles.</summary>
    public static int Rank(string? role) => Array.IndexOf(Management, role) + 1;
}

/// <summary>Body of <c>POST /v1/keys</c>.</summary>
public sealed record CreateApiKeyRequest
{
    /// <summary>What the key is for (ci-deployer, alice…), 1-64 characters.</summary>
    public string? Name { get; init; }
    /// <summary>One of <see cref="ApiKeyRoles"/>.</summary>
    public string? Role { get; init; }
    /// <summary>The key's project; required for every role but operator; defaults to the caller's project.</summary>
    public string? Project { get; init; }
    /// <summary>Lifetime in seconds; no expiry when null.</summary>
    public long? TtlSeconds { get; init; }
    /// <summary>Management calls allowed per minute (default 100; operator keys unlimited unless set).</summary>
    public int? RateLimitPerMinute { get; init; }
    /// <summary>Endpoint keys only: the gateway's limits of this key (positive values).</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>Endpoint keys only: the key's budget at the gateway.</summary>
    public BudgetSpec? Budget { get; init; }
}

/// <summary>
/// Body of <c>PATCH /v1/keys/{id}</c> and <c>PATCH /v1/projects/{name}</c>: the gateway's settings.
/// Each limit given replaces that limit (0 removes it); limits not given stay. A budget given replaces
/// the budget; <see cref="RemoveBudget"/> removes it.
/// </summary>
public sealed record UpdateGatewaySettingsRequest
{
    public GatewayLimits? Limits { get; init; }
    public BudgetSpec? Budget { get; init; }
    public bool RemoveBudget { get; init; }
}

/// <summary>An API key as the API shows it (never the key itself, except once at creation).</summary>
public record ApiKeyDto
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Role { get; init; }
    public string? Project { get; init; }
    /// <summary>The first characters of the key, to recognise it.</summary>
    public required string Prefix { get; init; }
    public int? RateLimitPerMinute { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public DateTimeOffset? RevokedAt { get; init; }
    /// <summary>The key that created this one (id and name), or null for the bootstrap key.</summary>
    public string? CreatedBy { get; init; }
    /// <summary>The gateway's limits of this endpoint key; null: none beyond its project's.</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>The key's budget at the gateway; null: none beyond its project's.</summary>
    public BudgetSpec? Budget { get; init; }
}

/// <summary>Answer of <c>POST /v1/keys</c>: the key, shown once.</summary>
public sealed record ApiKeyCreatedDto : ApiKeyDto
{
    public required string Key { get; init; }
}

/// <summary>Answer of <c>GET /v1/whoami</c>: the key the call was made with.</summary>
public sealed record WhoAmIDto
{
    public required string KeyId { get; init; }
    public required string Name { get; init; }
    public required string Role { get; init; }
    public string? Project { get; init; }
}

/// <summary>Body of <c>POST /v1/projects</c>.</summary>
public sealed record CreateProjectRequest
{
    public string? Name { get; init; }
    public string? Description { get; init; }
    /// <summary>The gateway's limits for all the project's endpoint keys together (positive values).</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>The project's budget at the gateway.</summary>
    public BudgetSpec? Budget { get; init; }
}

/// <summary>A project: it owns clusters and keys.</summary>
public sealed record ProjectDto
{
    public required string Name { get; init; }
    public string? Description { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public GatewayLimits? Limits { get; init; }
    public BudgetSpec? Budget { get; init; }
}

/// <summary>A provisioning token as <c>GET /v1/tokens</c> lists it (never the token itself).</summary>
public sealed record TokenDto
{
    public required string Id { get; init; }
    public string? Description { get; init; }
    public int MaxUses { get; init; }
    public int Uses { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>Header names of the management API's per-key rate limit.</summary>
public static class RateLimitHeaders
{
    public const string Limit = "X-RateLimit-Limit";
    public const string Remaining = "X-RateLimit-Remaining";
    /// <summary>Seconds until the window resets.</summary>
    public const string Reset = "X-RateLimit-Reset";
}
