using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/nodes</c>: list and get nodes; cordon, uncordon, drain, approve and remove them. Operator keys only.</summary>
public static class NodesApi
{
    public static RouteGroupBuilder MapNodesApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/nodes").WithTags("Nodes");
        group.MapGet("/", async (ControlPlaneState state, CancellationToken ct) =>
            Results.Json((await state.ListNodesAsync(ct)).Select(n => n.ToDto()).ToArray(), ShoalJsonContext.Default.NodeDtoArray))
            .RequireShoal(Permission.Installation)
            .Produces<NodeDto[]>();
        group.MapGet("/{id}", async (string id, ControlPlaneState state, CancellationToken ct) =>
            await state.GetNodeAsync(id, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .RequireShoal(Permission.Installation)
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapDelete("/{id}", RemoveAsync)
            .RequireShoal(Permission.Installation)
            .Produces(StatusCodes.Status204NoContent).Produces<ErrorResponse>(StatusCodes.Status404NotFound).Produces<ErrorResponse>(StatusCodes.Status409Conflict);
        MapScheduling(group, "cordon", NodeSchedulingAction.Cordon);
        MapScheduling(group, "uncordon", NodeSchedulingAction.Uncordon);
        MapScheduling(group, "drain", NodeSchedulingAction.Drain);
        // POST /v1/nodes/{id}/approve: a node that waits for approval (its token asked for manual approval) gets work.
        group.MapPost("/{id}/approve", async (string id, ControlPlaneState state, CancellationToken ct) =>
            await state.ApproveNodeAsync(id, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .RequireShoal(Permission.Installation)
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return group;
    }

    // POST /v1/nodes/{id}/cordon|uncordon|drain (id or unique name): the node as it is now; a drain goes on in the background.
    private static void MapScheduling(RouteGroupBuilder group, string verb, NodeSchedulingAction action)
    {
        group.MapPost("/{id}/" + verb, async (string id, HttpContext http, ControlPlaneState state, CancellationToken ct) =>
            await state.SetNodeSchedulingAsync(id, action, Caller.From(http).Actor, ct) is { } node
                ? Results.Json(node.ToDto(), ShoalJsonContext.Default.NodeDto)
                : ApiResults.NotFound($"node '{id}' not found"))
            .RequireShoal(Permission.Installation)
            .Produces<NodeDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
    }

    /// <summary><c>DELETE /v1/nodes/{id}</c>: forgets a node that is not connected; its replicas are placed again.</summary>
    private static async Task<IResult> RemoveAsync(string id, HttpContext http, ControlPlaneState state, CancellationToken ct)
    {
        var (outcome, node) = await state.RemoveNodeAsync(id, Caller.From(http).Actor, ct);
        return outcome switch
        {
            NodeRemoval.Removed => Results.NoContent(),
            NodeRemoval.Connected => ApiResults.Error(StatusCodes.Status409Conflict, ErrorCodes.AlreadyExists,
                $"node '{node!.Name}' ({node.Id}) is connected; stop its agent first (or drain it to move its replicas)"),
            _ => ApiResults.NotFound($"node '{id}' not found"),
        };
    }
}
