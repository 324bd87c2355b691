using Shoal.Contracts;
using Shoal.Core.Security;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/tokens</c>: provisioning tokens that let new nodes register.</summary>
public static class TokensApi
{
    public const int DefaultTtlSeconds = 3600;
    public const int MaxTtlSeconds = 30 * 24 * 3600;
    public const int MaxUses = 10_000;

    public static RouteGroupBuilder MapTokensApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/tokens").WithTags("Tokens");
        group.MapPost("/", CreateAsync).Produces<TokenCreatedDto>(StatusCodes.Status201Created).Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        return group;
    }

    private static async Task<IResult> CreateAsync(CreateTokenRequest? request, IShoalStore store, TimeProvider time, CancellationToken ct)
    {
        request ??= new CreateTokenRequest();
        var ttl = request.TtlSeconds ?? DefaultTtlSeconds;
        var uses = request.Uses ?? 1;
        if (ttl is < 1 or > MaxTtlSeconds) return ApiResults.BadRequest($"ttlSeconds must be between 1 and {MaxTtlSeconds}, got {ttl}");
        if (uses is < 1 or > MaxUses) return ApiResults.BadRequest($"uses must be between 1 and {MaxUses}, got {uses}");
        if (request.Description is { Length: > 200 }) return ApiResults.BadRequest("description must be at most 200 characters");

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
        };
        await store.CreateTokenAsync(record, ct);
        var dto = new TokenCreatedDto { Id = record.Id, Token = token, Description = record.Description, Uses = uses, ExpiresAt = record.ExpiresAt };
        return Results.Json(dto, ShoalJsonContext.Default.TokenCreatedDto, statusCode: StatusCodes.Status201Created);
    }
}
