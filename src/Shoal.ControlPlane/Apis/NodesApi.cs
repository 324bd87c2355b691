using Shoal.Contracts;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/nodes</c>: list and get nodes.</summary>
public static class NodesApi
{
    public static RouteGroupBuilder MapNodesApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/nodes").WithTags("Nodes");
        group.MapGet("/", async (ControlPlaneState state, CancellationToken ct) =>
            Results.Json((await state.ListNodesAsync(ct)).Select(n => n.ToDto()).ToArray(), ShoalJsonContext.Default.NodeDtoArray))
            .Produces<NodeDto[]>();
        group.MapGet("/{id}", async (string id, ControlPlaneState state, CancellationToken ct) =>
            await state.GetNodeAsync(id, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return group;
    }
}
