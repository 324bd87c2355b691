using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.Core.Clusters;
using Shoal.Core.Security;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/tokens</c>: provisioning tokens that let new nodes register.</summary>
public static partial class TokensApi
{
    public const int DefaultTtlSeconds = 3600;
    public const int MaxTtlSeconds = 30 * 24 * 3600;
    public const int MaxUses = 10_000;
    /// <summary>The highest GPU cap a token may set (a hello lists at most this many GPUs).</summary>
    public const int MaxGpus = 64;

    public static RouteGroupBuilder MapTokensApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/tokens").WithTags("Tokens");
        group.MapPost("/", CreateAsync).RequireShoal(Permission.Installation)
            .Produces<TokenCreatedDto>(StatusCodes.Status201Created).Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        group.MapGet("/", async (IShoalStore store, CancellationToken ct) =>
            Results.Json((await store.ListTokensAsync(ct)).Select(t => t.ToDto()).ToArray(), ShoalJsonContext.Default.TokenDtoArray))
            .RequireShoal(Permission.Installation).Produces<TokenDto[]>();
        group.MapDelete("/{id}", RevokeAsync).RequireShoal(Permission.Installation)
            .Produces(StatusCodes.Status204NoContent).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return group;
    }

    /// <summary><c>DELETE /v1/tokens/{id}</c>: revokes a provisioning token; nodes that joined with it stay.</summary>
    private static async Task<IResult> RevokeAsync(string id, HttpContext http, IShoalStore store, TimeProvider time, ILoggerFactory logs, CancellationToken ct)
    {
        if (!await store.RevokeTokenAsync(id, time.GetUtcNow(), ct)) return ApiResults.NotFound($"token '{id}' not found");
        var logger = logs.CreateLogger("Shoal.Api");
        var actor = Caller.From(http).Actor;
        LogRevoked(logger, id, actor);
        return Results.NoContent();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Provisioning token {Id} revoked by {Actor}")]
    private static partial void LogRevoked(ILogger logger, string id, string actor);

    [LoggerMessage(Level = LogLevel.Information, Message = "Provisioning token {Id} created by {Actor} ({Uses} uses)")]
    private static partial void LogCreated(ILogger logger, string id, string actor, int uses);

    private static async Task<IResult> CreateAsync(CreateTokenRequest? request, HttpContext http, IShoalStore store, TimeProvider time, ILoggerFactory logs, CancellationToken ct)
    {
        request ??= new CreateTokenRequest();
        var ttl = request.TtlSeconds ?? DefaultTtlSeconds;
        var uses = request.Uses ?? 1;
        if (ttl is < 1 or > MaxTtlSeconds) return ApiResults.BadRequest($"ttlSeconds must be between 1 and {MaxTtlSeconds}, got {ttl}");
        if (uses is < 1 or > MaxUses) return ApiResults.BadRequest($"uses must be between 1 and {MaxUses}, got {uses}");
        if (request.Description is { Length: > 200 }) return ApiResults.BadRequest("description must be at most 200 characters");
        var approve = request.Approve ?? TokenApproval.Auto;
        if (approve is not (TokenApproval.Auto or TokenApproval.Manual)) return ApiResults.BadRequest($"approve must be '{TokenApproval.Auto}' or '{TokenApproval.Manual}', got '{(approve.Length > 20 ? approve[..20] + "…" : approve)}'");
        if (request.MaxGpus is < 1 or > MaxGpus) return ApiResults.BadRequest($"maxGpus must be between 1 and {MaxGpus}, got {request.MaxGpus}");
        var labelErrors = new List<string>();
        ClusterSpecValidator.ValidateLabels(request.Labels ?? [], "labels", labelErrors);
        if (labelErrors.Count > 0) return ApiResults.BadRequest(string.Join("; ", labelErrors));

        var now = time.GetUtcNow();
        var token = Secrets.NewToken("shoal_pt_");
        var record = new ProvisioningTokenRecord
        {
            Id = "tok-" + Secrets.RandomId(10),
            Hash = Secrets.Hash(token),
            Description = request.Description,
            MaxUses = uses,
            CreatedAt = now,
            ExpiresAt = now.AddSeconds(ttl),
            ManualApproval = approve == TokenApproval.Manual,
            MaxGpus = request.MaxGpus,
            Labels = (request.Labels ?? []).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray(),
            AllowDirect = request.Direct ?? false,
        };
        await store.CreateTokenAsync(record, ct);
        var logger = logs.CreateLogger("Shoal.Api");
        var actor = Caller.From(http).Actor;
        LogCreated(logger, record.Id, actor, uses);
        var dto = new TokenCreatedDto
        {
            Id = record.Id,
            Token = token,
            Description = record.Description,
            Uses = uses,
            ExpiresAt = record.ExpiresAt,
            Approve = approve,
            MaxGpus = record.MaxGpus,
            Labels = record.Labels,
            Direct = record.AllowDirect,
        };
        return Results.Json(dto, ShoalJsonContext.Default.TokenCreatedDto, statusCode: StatusCodes.Status201Created);
    }
}
