using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Clusters;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/clusters</c>: create, list, get, scale, delete, status.</summary>
public static class ClustersApi
{
    public static RouteGroupBuilder MapClustersApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/clusters").WithTags("Clusters");
        group.MapPost("/", CreateAsync)
            .Produces<ClusterDto>(StatusCodes.Status201Created)
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest)
            .Produces<ErrorResponse>(StatusCodes.Status409Conflict);
        group.MapGet("/", ListAsync).Produces<ClusterDto[]>();
        group.MapGet("/{name}", GetAsync).Produces<ClusterDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapPatch("/{name}", UpdateAsync).Produces<ClusterDto>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapDelete("/{name}", DeleteAsync).Produces(StatusCodes.Status204NoContent).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapGet("/{name}/status", StatusAsync).Produces<ClusterStatusDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return group;
    }

    private static async Task<IResult> CreateAsync(CreateClusterRequest? request, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var validated = ClusterSpecValidator.Validate(request);
        if (!validated.IsValid) return ApiResults.BadRequest(validated.Message);
        try
        {
            var cluster = await state.CreateClusterAsync(validated.Value!, ct);
            var view = await state.GetClusterAsync(cluster.Name, ct);
            var dto = view!.ToDto(edge.EdgeUrl);
            return Results.Json(dto, ShoalJsonContext.Default.ClusterDto, statusCode: StatusCodes.Status201Created);
        }
        catch (StoreConflictException e)
        {
            return ApiResults.Conflict(e.Message);
        }
    }

    private static async Task<IResult> ListAsync(ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        var list = await state.ListClustersAsync(ct);
        return Results.Json(list.Select(v => v.ToDto(edge.EdgeUrl)).ToArray(), ShoalJsonContext.Default.ClusterDtoArray);
    }

    private static async Task<IResult> GetAsync(string name, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        var view = await state.GetClusterAsync(name, ct);
        return view is null ? NotFound(name) : Results.Json(view.ToDto(edge.EdgeUrl), ShoalJsonContext.Default.ClusterDto);
    }

    private static async Task<IResult> UpdateAsync(string name, UpdateClusterRequest? request, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        if (request?.Replicas is not { } replicas) return ApiResults.BadRequest("nothing to change: give replicas");
        var errors = new List<string>();
        ClusterSpecValidator.ValidateReplicas(replicas, errors);
        if (errors.Count > 0) return ApiResults.BadRequest(string.Join("; ", errors));
        var updated = await state.ScaleClusterAsync(name, replicas, ct);
        if (updated is null) return NotFound(name);
        var view = await state.GetClusterAsync(name, ct);
        return view is null ? NotFound(name) : Results.Json(view.ToDto(edge.EdgeUrl), ShoalJsonContext.Default.ClusterDto);
    }

    private static async Task<IResult> DeleteAsync(string name, ControlPlaneState state, CancellationToken ct) =>
        await state.DeleteClusterAsync(name, ct) ? Results.NoContent() : NotFound(name);

    private static async Task<IResult> StatusAsync(string name, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        var view = await state.GetClusterAsync(name, ct);
        if (view is null) return NotFound(name);
        var dto = new ClusterStatusDto
        {
            Cluster = view.ToDto(edge.EdgeUrl),
            Replicas = view.Replicas.Select(r => r.ToDto(name)).ToArray(),
        };
        return Results.Json(dto, ShoalJsonContext.Default.ClusterStatusDto);
    }

    private static IResult NotFound(string name) => ApiResults.NotFound($"cluster '{name}' not found");
}

/// <summary>The public edge URL, for showing endpoints.</summary>
public sealed record ServerOptionsAccessor(string EdgeUrl);
