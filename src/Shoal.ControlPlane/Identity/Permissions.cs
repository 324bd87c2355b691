using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Shoal.Contracts;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Identity;

/// <summary>What a management route asks of the caller. Each route declares one, next to its mapping.</summary>
public enum Permission
{
    /// <summary>Any management key (who am I, GPU types, the API description).</summary>
    Authenticated,
    /// <summary>Read a project's clusters, their status and events: viewer and up.</summary>
    ClusterRead,
    /// <summary>Deploy, update, scale: member and up.</summary>
    ClusterWrite,
    /// <summary>Read replica logs: member and up.</summary>
    ClusterLogs,
    /// <summary>Delete a cluster: admin and up.</summary>
    ClusterDelete,
    /// <summary>List, create and revoke a project's keys: admin (endpoint keys) and owner (every project role).</summary>
    ProjectKeys,
    /// <summary>See the projects one belongs to (operators: all).</summary>
    ProjectRead,
    /// <summary>The installation: nodes, provisioning tokens, creating projects. Operator only.</summary>
    Installation,
}

/// <summary>Maps routes to permissions and checks them.</summary>
public static class ShoalAuthorization
{
    private const string PolicyPrefix = "shoal:";

    /// <summary>The policy name of <paramref name="permission"/>, as routes carry it.</summary>
    public static string PolicyName(Permission permission) => PolicyPrefix + permission;

    /// <summary>Declares what the route asks of the caller (a key, with the role and project it needs).</summary>
    public static TBuilder RequireShoal<TBuilder>(this TBuilder builder, Permission permission) where TBuilder : IEndpointConventionBuilder =>
        builder.RequireAuthorization(PolicyName(permission));

    /// <summary>The least role (rank, see <see cref="ApiKeyRoles.Rank"/>) a project key needs for <paramref name="permission"/>.</summary>
    public static int MinimumRank(Permission permission) => permission switch
    {
        Permission.Authenticated or Permission.ProjectRead or Permission.ClusterRead => ApiKeyRoles.Rank(ApiKeyRoles.Viewer),
        Permission.ClusterWrite or Permission.ClusterLogs => ApiKeyRoles.Rank(ApiKeyRoles.Member),
        Permission.ClusterDelete or Permission.ProjectKeys => ApiKeyRoles.Rank(ApiKeyRoles.Admin),
        _ => ApiKeyRoles.Rank(ApiKeyRoles.Operator),
    };

    public static IServiceCollection AddShoalAuthorization(this IServiceCollection services)
    {
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorization(o =>
        {
            foreach (var permission in Enum.GetValues<Permission>())
            {
                o.AddPolicy(PolicyName(permission), p => p.RequireAuthenticatedUser().AddRequirements(new PermissionRequirement(permission)));
            }
            // A route that declares nothing still needs a valid key: fail closed.
            o.FallbackPolicy = new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build();
        });
        services.AddSingleton<IAuthorizationHandler, PermissionHandler>();
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, ShoalAuthorizationResults>();
        return services;
    }
}

/// <summary>The requirement behind each <see cref="Permission"/> policy.</summary>
public sealed record PermissionRequirement(Permission Permission) : IAuthorizationRequirement;

/// <summary>
/// Checks role and project: operators may do everything; endpoint keys nothing; project keys what
/// their role allows, on their own project's clusters (a route's <c>{name}</c> names the cluster).
/// Creation and listing routes also filter by project in their handlers.
/// </summary>
public sealed class PermissionHandler(ControlPlaneState state) : AuthorizationHandler<PermissionRequirement>
{
    protected override async Task HandleRequirementAsync(AuthorizationHandlerContext context, PermissionRequirement requirement)
    {
        if (context.Resource is not HttpContext http || context.User.Identity?.IsAuthenticated != true) return;
        var caller = Caller.From(http);
        if (caller.IsOperator)
        {
            context.Succeed(requirement);
            return;
        }
        if (caller.Role == ApiKeyRoles.Endpoint)
        {
            context.Fail(new AuthorizationFailureReason(this, "endpoint keys call a project's endpoints at the edge, not the management API"));
            return;
        }
        var permission = requirement.Permission;
        if (ApiKeyRoles.Rank(caller.Role) < ShoalAuthorization.MinimumRank(permission))
        {
            var needs = permission == Permission.Installation ? "an operator key" : $"role {ApiKeyRoles.Management[ShoalAuthorization.MinimumRank(permission) - 1]} or higher";
            context.Fail(new AuthorizationFailureReason(this, $"this call needs {needs}; key {caller.KeyId} has role {caller.Role}"));
            return;
        }
        if (http.GetRouteValue("name") is string cluster && http.Request.Path.StartsWithSegments("/v1/clusters"))
        {
            var project = await state.ClusterProjectAsync(cluster, http.RequestAborted);
            // An unknown cluster is the handler's 404; one of another project is refused here.
            if (project is not null && !caller.InProject(project))
            {
                context.Fail(new AuthorizationFailureReason(this, $"cluster '{cluster}' belongs to another project than key {caller.KeyId}'s ({caller.Project})"));
                return;
            }
        }
        context.Succeed(requirement);
    }
}

/// <summary>Refusals in the API's error shape: 401 with why the key was not accepted, 403 with what was missing.</summary>
public sealed class ShoalAuthorizationResults : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        if (authorizeResult.Forbidden)
        {
            var reason = authorizeResult.AuthorizationFailure?.FailureReasons.FirstOrDefault()?.Message ?? "this key may not make this call";
            return ApiResults.WriteAsync(context, StatusCodes.Status403Forbidden, ErrorCodes.Forbidden, reason);
        }
        return _default.HandleAsync(next, context, policy, authorizeResult);
    }
}
