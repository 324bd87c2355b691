using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.State;
using Shoal.Core.Gpus;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/gpu-types</c>: the catalogue, with how many GPUs of each type are on ready nodes and free.</summary>
public static class GpuTypesApi
{
    public static IEndpointRouteBuilder MapGpuTypesApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/gpu-types", async (ControlPlaneState state, CancellationToken ct) =>
        {
            var nodes = await state.ListNodesAsync(ct);
            var clusters = await state.ListClustersAsync(ct);
            var used = clusters.SelectMany(c => c.Replicas.Where(r => r.Replica.NodeId is not null).Select(r => (r.Replica.NodeId!, r.Replica.GpuIndexes)))
                .SelectMany(x => x.GpuIndexes.Select(i => (x.Item1, i)))
                .ToHashSet();
            var ready = nodes.Where(n => n.Node.State == NodeState.Ready).ToList();
            var result = GpuCatalog.All.Select(t =>
            {
                var gpus = ready.SelectMany(n => n.Node.Hardware.Gpus.Where(g => g.Type == t.Slug).Select(g => (n.Node.Id, g.Index))).ToList();
                return new GpuTypeDto
                {
                    Type = t.Slug,
                    DisplayName = t.DisplayName,
                    MemoryMiB = t.MemoryMiB,
                    Total = gpus.Count,
                    Free = gpus.Count(g => !used.Contains(g)),
                };
            }).ToArray();
            return Results.Json(result, ShoalJsonContext.Default.GpuTypeDtoArray);
        }).WithTags("GPU types").RequireShoal(Permission.Authenticated).Produces<GpuTypeDto[]>();
        return app;
    }
}
