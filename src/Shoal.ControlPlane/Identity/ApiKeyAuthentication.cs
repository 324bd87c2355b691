using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Identity;

/// <summary>
/// Authenticates management calls by API key (<c>Authorization: Bearer shoal_…</c>): unknown,
/// revoked and expired keys fail with a reason that the 401 answer carries.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    ApiKeyDirectory keys, TimeProvider time)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ShoalApiKey";
    public const string ProjectClaim = "shoal:project";
    private const string FailureItem = "shoal:auth-failure";

    /// <summary>Why the call was not authenticated, for the 401 answer.</summary>
    public static string FailureOf(HttpContext context) =>
        context.Items[FailureItem] as string ?? "an API key is required: send Authorization: Bearer <key> (see `shoal login`)";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (header.Length == 0) return Task.FromResult(AuthenticateResult.NoResult());
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return Fail("the Authorization header must be 'Bearer <key>'");
        }
        var presented = header["Bearer ".Length..].Trim();
        var key = keys.Find(presented);
        if (key is null) return Fail("the API key is not valid");
        if (key.RevokedAt is not null) return Fail($"the API key {key.Id} was revoked");
        if (key.ExpiresAt is { } expires && expires <= time.GetUtcNow()) return Fail($"the API key {key.Id} expired at {expires:u}");

        List<Claim> claims =
        [
            new(ClaimTypes.NameIdentifier, key.Id),
            new(ClaimTypes.Name, key.Name),
            new(ClaimTypes.Role, key.Role),
        ];
        if (key.Project is not null) claims.Add(new Claim(ProjectClaim, key.Project));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName)));
    }

    private Task<AuthenticateResult> Fail(string reason)
    {
        Context.Items[FailureItem] = reason;
        return Task.FromResult(AuthenticateResult.Fail(reason));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.Headers.WWWAuthenticate = "Bearer";
        return ApiResults.WriteAsync(Context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, FailureOf(Context));
    }
}

/// <summary>Who made a management call: the API key's id, name, role and project.</summary>
public sealed record Caller(string KeyId, string Name, string Role, string? Project)
{
    public bool IsOperator => Role == ApiKeyRoles.Operator;

    /// <summary>How events name the caller: <c>key-id (name)</c>.</summary>
    public string Actor => $"{KeyId} ({Name})";

    /// <summary>May act on something of <paramref name="project"/> (operators: any).</summary>
    public bool InProject(string project) => IsOperator || Project == project;

    public static Caller From(HttpContext context)
    {
        var user = context.User;
        return new Caller(
            user.FindFirstValue(ClaimTypes.NameIdentifier) ?? throw new InvalidOperationException("the call was not authenticated"),
            user.FindFirstValue(ClaimTypes.Name) ?? "",
            user.FindFirstValue(ClaimTypes.Role) ?? "",
            user.FindFirstValue(ApiKeyAuthenticationHandler.ProjectClaim));
    }
}
