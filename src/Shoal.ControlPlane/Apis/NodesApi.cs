using Shoal.Contracts;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/nodes</c>: list and get nodes; cordon, uncordon and drain them; approve them.</summary>
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
        MapScheduling(group, "cordon", NodeSchedulingAction.Cordon);
        MapScheduling(group, "uncordon", NodeSchedulingAction.Uncordon);
        MapScheduling(group, "drain", NodeSchedulingAction.Drain);
        // POST /v1/nodes/{id}/approve: a node that waits for approval (its token asked for manual approval) gets work.
        group.MapPost("/{id}/approve", async (string id, ControlPlaneState state, CancellationToken ct) =>
            await state.ApproveNodeAsync(id, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return group;
    }

    // POST /v1/nodes/{id}/cordon|uncordon|drain (id or unique name): the node as it is now; a drain goes on in the background.
    private static void MapScheduling(RouteGroupBuilder group, string verb, NodeSchedulingAction action)
    {
        group.MapPost("/{id}/" + verb, async (string id, ControlPlaneState state, CancellationToken ct) =>
            await state.SetNodeSchedulingAsync(id, action, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
    }
}
