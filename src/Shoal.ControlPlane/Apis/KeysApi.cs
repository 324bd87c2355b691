using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.Core.Clusters;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary>
/// <c>/v1/keys</c> (API keys), <c>/v1/projects</c> and <c>/v1/whoami</c>. Owners manage every
/// key of their project, admins its endpoint keys, operators everything (operator keys included).
/// </summary>
public static class KeysApi
{
    public const int MaxRateLimitPerMinute = 1_000_000;
    public const long MaxTtlSeconds = 10L * 365 * 24 * 3600;

    public static IEndpointRouteBuilder MapKeysApi(this IEndpointRouteBuilder app)
    {
        var keys = app.MapGroup("/v1/keys").WithTags("Keys");
        keys.MapPost("/", CreateAsync).RequireShoal(Permission.ProjectKeys)
            .Produces<ApiKeyCreatedDto>(StatusCodes.Status201Created).Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        keys.MapGet("/", (HttpContext http, ApiKeyDirectory directory) =>
        {
            var caller = Caller.From(http);
            return Results.Json(directory.List().Where(k => MayManage(caller, k.Role, k.Project) is null).Select(k => k.ToDto()).ToArray(),
                ShoalJsonContext.Default.ApiKeyDtoArray);
        })
            .RequireShoal(Permission.ProjectKeys).Produces<ApiKeyDto[]>();
        keys.MapPatch("/{id}", UpdateKeyAsync).RequireShoal(Permission.ProjectKeys)
            .Produces<ApiKeyDto>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        keys.MapDelete("/{id}", RevokeAsync).RequireShoal(Permission.ProjectKeys)
            .Produces(StatusCodes.Status204NoContent).Produces<ErrorResponse>(StatusCodes.Status404NotFound);

        var projects = app.MapGroup("/v1/projects").WithTags("Projects");
        projects.MapPost("/", CreateProjectAsync).RequireShoal(Permission.Installation)
            .Produces<ProjectDto>(StatusCodes.Status201Created).Produces<ErrorResponse>(StatusCodes.Status409Conflict);
        projects.MapGet("/", (HttpContext http, ApiKeyDirectory directory) =>
        {
            var caller = Caller.From(http);
            return Results.Json(directory.ListProjects().Where(p => caller.InProject(p.Name)).Select(p => p.ToDto()).ToArray(),
                ShoalJsonContext.Default.ProjectDtoArray);
        })
            .RequireShoal(Permission.ProjectRead).Produces<ProjectDto[]>();
        // A project's limits and budget cap what all its keys use: the operator sets them.
        projects.MapPatch("/{name}", UpdateProjectAsync).RequireShoal(Permission.Installation)
            .Produces<ProjectDto>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest).Produces<ErrorResponse>(StatusCodes.Status404NotFound);

        app.MapGet("/v1/whoami", (HttpContext http) =>
        {
            var caller = Caller.From(http);
            return Results.Json(new WhoAmIDto { KeyId = caller.KeyId, Name = caller.Name, Role = caller.Role, Project = caller.Project }, ShoalJsonContext.Default.WhoAmIDto);
        }).WithTags("Keys").RequireShoal(Permission.Authenticated).Produces<WhoAmIDto>();
        return app;
    }

    /// <summary>Why <paramref name="caller"/> may not create or revoke a key of this role and project; null when it may.</summary>
    public static string? MayManage(Caller caller, string role, string? project)
    {
        if (caller.IsOperator) return null;
        if (role == ApiKeyRoles.Operator) return "only operator keys create or revoke operator keys";
        if (project != caller.Project) return $"key {caller.KeyId} belongs to project '{caller.Project}', not '{project}'";
        if (caller.Role == ApiKeyRoles.Owner) return null;
        if (caller.Role == ApiKeyRoles.Admin && role == ApiKeyRoles.Endpoint) return null;
        return caller.Role == ApiKeyRoles.Admin ? "admins manage endpoint keys; keys with other roles need an owner" : "managing keys needs role admin or higher";
    }

    private static async Task<IResult> CreateAsync(CreateApiKeyRequest? request, HttpContext http, ApiKeyDirectory directory, TimeProvider time, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var caller = Caller.From(http);
        var errors = new List<string>();
        var name = request.Name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 64 || name.Any(char.IsControl)) errors.Add("name is required: 1-64 printable characters");
        if (!ApiKeyRoles.IsKnown(request.Role)) errors.Add($"role must be one of {string.Join(", ", ApiKeyRoles.Management.Reverse())}, {ApiKeyRoles.Endpoint}");
        if (request.TtlSeconds is < 1 or > MaxTtlSeconds) errors.Add($"ttlSeconds must be between 1 and {MaxTtlSeconds}");
        if (request.RateLimitPerMinute is < 1 or > MaxRateLimitPerMinute) errors.Add($"rateLimitPerMinute must be between 1 and {MaxRateLimitPerMinute}");
        ValidateGateway(request.Limits, request.Budget, removing: false, errors);
        if ((request.Limits is { IsEmpty: false } || request.Budget is not null) && request.Role != ApiKeyRoles.Endpoint)
        {
            errors.Add("limits and budget apply to endpoint keys only (role endpoint)");
        }
        if (errors.Count > 0) return ApiResults.BadRequest(string.Join("; ", errors));

        var role = request.Role!;
        string? project = null;
        if (role != ApiKeyRoles.Operator)
        {
            project = request.Project ?? caller.Project;
            if (project is null) return ApiResults.BadRequest("project is required for a key with a project role");
            if (!directory.ProjectExists(project))
            {
                return caller.InProject(project)
                    ? ApiResults.BadRequest($"project '{project}' does not exist; create it first (shoal projects create {project})")
                    : ApiResults.Forbidden($"key {caller.KeyId} belongs to project '{caller.Project}', not '{project}'");
            }
        }
        else if (request.Project is not null)
        {
            return ApiResults.BadRequest("operator keys belong to no project; leave project out");
        }
        if (MayManage(caller, role, project) is { } refused) return ApiResults.Forbidden(refused);

        DateTimeOffset? expires = request.TtlSeconds is { } ttl ? time.GetUtcNow().AddSeconds(ttl) : null;
        var (record, key) = await directory.CreateAsync(name!, role, project, expires, request.RateLimitPerMinute, request.Limits, request.Budget, caller.Actor, ct);
        var dto = record.ToDto();
        var created = new ApiKeyCreatedDto
        {
            Id = dto.Id, Name = dto.Name, Role = dto.Role, Project = dto.Project, Prefix = dto.Prefix, RateLimitPerMinute = dto.RateLimitPerMinute,
            CreatedAt = dto.CreatedAt, ExpiresAt = dto.ExpiresAt, CreatedBy = dto.CreatedBy, Limits = dto.Limits, Budget = dto.Budget, Key = key,
        };
        return Results.Json(created, ShoalJsonContext.Default.ApiKeyCreatedDto, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> RevokeAsync(string id, HttpContext http, ApiKeyDirectory directory, CancellationToken ct)
    {
        var caller = Caller.From(http);
        var key = directory.Get(id);
        if (key is null) return ApiResults.NotFound($"key '{id}' not found");
        if (MayManage(caller, key.Role, key.Project) is { } refused) return ApiResults.Forbidden(refused);
        await directory.RevokeAsync(id, caller.Actor, ct);
        return Results.NoContent();
    }

    private static async Task<IResult> CreateProjectAsync(CreateProjectRequest? request, HttpContext http, ApiKeyDirectory directory, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        if (!ClusterSpecValidator.IsValidName(request.Name)) return ApiResults.BadRequest($"project name '{request.Name}' is invalid: lower-case letters, digits and '-', 1-63 characters, starting with a letter");
        if (request.Description is { Length: > 200 }) return ApiResults.BadRequest("description must be at most 200 characters");
        var errors = new List<string>();
        ValidateGateway(request.Limits, request.Budget, removing: false, errors);
        if (errors.Count > 0) return ApiResults.BadRequest(string.Join("; ", errors));
        try
        {
            var project = await directory.CreateProjectAsync(request.Name!, request.Description, request.Limits, request.Budget, Caller.From(http).Actor, ct);
            return Results.Json(project.ToDto(), ShoalJsonContext.Default.ProjectDto, statusCode: StatusCodes.Status201Created);
        }
        catch (StoreConflictException)
        {
            return ApiResults.Conflict($"project '{request.Name}' already exists");
        }
    }

    private static async Task<IResult> UpdateKeyAsync(string id, UpdateGatewaySettingsRequest? request, HttpContext http, ApiKeyDirectory directory, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var caller = Caller.From(http);
        var key = directory.Get(id);
        if (key is null) return ApiResults.NotFound($"key '{id}' not found");
        if (MayManage(caller, key.Role, key.Project) is { } refused) return ApiResults.Forbidden(refused);
        if (key.Role != ApiKeyRoles.Endpoint) return ApiResults.BadRequest($"key '{id}' has role {key.Role}: limits and budget apply to endpoint keys only");
        if (key.RevokedAt is not null) return ApiResults.Conflict($"key '{id}' is revoked");
        var errors = new List<string>();
        ValidateUpdate(request, errors);
        if (errors.Count > 0) return ApiResults.BadRequest(string.Join("; ", errors));
        var updated = await directory.UpdateGatewayAsync(id, MergeLimits(key.Limits, request.Limits), request.RemoveBudget ? null : request.Budget ?? key.Budget, caller.Actor, ct);
        return updated is null ? ApiResults.NotFound($"key '{id}' not found") : Results.Json(updated.ToDto(), ShoalJsonContext.Default.ApiKeyDto);
    }

    private static async Task<IResult> UpdateProjectAsync(string name, UpdateGatewaySettingsRequest? request, HttpContext http, ApiKeyDirectory directory, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var project = directory.GetProject(name);
        if (project is null) return ApiResults.NotFound($"project '{name}' not found");
        var errors = new List<string>();
        ValidateUpdate(request, errors);
        if (errors.Count > 0) return ApiResults.BadRequest(string.Join("; ", errors));
        var updated = await directory.UpdateProjectGatewayAsync(name, MergeLimits(project.Limits, request.Limits),
            request.RemoveBudget ? null : request.Budget ?? project.Budget, Caller.From(http).Actor, ct);
        return updated is null ? ApiResults.NotFound($"project '{name}' not found") : Results.Json(updated.ToDto(), ShoalJsonContext.Default.ProjectDto);
    }

    private static void ValidateUpdate(UpdateGatewaySettingsRequest request, List<string> errors)
    {
        ValidateGateway(request.Limits, request.Budget, removing: true, errors);
        if (request.RemoveBudget && request.Budget is not null) errors.Add("give a budget or removeBudget, not both");
        if (request.Limits is null && request.Budget is null && !request.RemoveBudget) errors.Add("nothing to change: give limits, a budget or removeBudget");
    }

    public const int MaxRequestsPerMinute = 100_000_000;
    public const long MaxTokensPerMinute = 1_000_000_000_000;
    public const int MaxConcurrentRequests = 10_000_000;
    public const decimal MaxBudgetUsd = 1_000_000_000m;

    /// <summary>Checks gateway limits (positive; 0 allowed when <paramref name="removing"/>: it removes that limit) and a budget.</summary>
    public static void ValidateGateway(GatewayLimits? limits, BudgetSpec? budget, bool removing, List<string> errors)
    {
        var min = removing ? 0 : 1;
        var what = removing ? "0 (removes it) or a positive integer" : "a positive integer";
        if (limits?.RequestsPerMinute is { } rpm && (rpm < min || rpm > MaxRequestsPerMinute)) errors.Add($"limits.requestsPerMinute must be {what} up to {MaxRequestsPerMinute}");
        if (limits?.TokensPerMinute is { } tpm && (tpm < min || tpm > MaxTokensPerMinute)) errors.Add($"limits.tokensPerMinute must be {what} up to {MaxTokensPerMinute}");
        if (limits?.MaxConcurrent is { } conc && (conc < min || conc > MaxConcurrentRequests)) errors.Add($"limits.maxConcurrent must be {what} up to {MaxConcurrentRequests}");
        if (budget is null) return;
        if (budget.AmountUsd is <= 0 or > MaxBudgetUsd) errors.Add($"budget.amountUsd must be more than 0 and at most {MaxBudgetUsd}");
        if (!BudgetPeriods.IsKnown(budget.Period)) errors.Add($"budget.period must be one of {BudgetPeriods.Day}, {BudgetPeriods.Week}, {BudgetPeriods.Month}");
    }

    /// <summary>The limits after a change: each limit given replaces the current one, 0 removes it; null when none is left.</summary>
    public static GatewayLimits? MergeLimits(GatewayLimits? current, GatewayLimits? change)
    {
        if (change is null) return current;
        current ??= new GatewayLimits();
        var merged = new GatewayLimits
        {
            RequestsPerMinute = change.RequestsPerMinute is { } rpm ? (rpm == 0 ? null : rpm) : current.RequestsPerMinute,
            TokensPerMinute = change.TokensPerMinute is { } tpm ? (tpm == 0 ? null : tpm) : current.TokensPerMinute,
            MaxConcurrent = change.MaxConcurrent is { } conc ? (conc == 0 ? null : conc) : current.MaxConcurrent,
        };
        return merged.IsEmpty ? null : merged;
    }
}
