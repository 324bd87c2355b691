using System.Text;
using Shoal.Contracts;
using Shoal.ControlPlane.Agents;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.State;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary><c>/v1/clusters</c>: create, list, get, scale, delete, status, events, logs.</summary>
public static partial class ClustersApi
{
    public static RouteGroupBuilder MapClustersApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/clusters").WithTags("Clusters");
        group.MapPost("/", CreateAsync)
            .RequireShoal(Permission.ClusterWrite)
            .Produces<ClusterDto>(StatusCodes.Status201Created)
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest)
            .Produces<ErrorResponse>(StatusCodes.Status409Conflict);
        group.MapGet("/", ListAsync).RequireShoal(Permission.ClusterRead).Produces<ClusterDto[]>();
        group.MapGet("/{name}", GetAsync).RequireShoal(Permission.ClusterRead).Produces<ClusterDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapPatch("/{name}", UpdateAsync).RequireShoal(Permission.ClusterWrite)
            .Produces<ClusterDto>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapDelete("/{name}", DeleteAsync).RequireShoal(Permission.ClusterDelete)
            .Produces(StatusCodes.Status204NoContent).Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapGet("/{name}/status", StatusAsync).RequireShoal(Permission.ClusterRead)
            .Produces<ClusterStatusDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapGet("/{name}/events", EventsAsync)
            .RequireShoal(Permission.ClusterRead)
            .Produces<ClusterEventDto[]>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest)
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        group.MapGet("/{name}/logs", LogsAsync)
            .RequireShoal(Permission.ClusterLogs)
            .Produces<string>(StatusCodes.Status200OK, "text/plain")
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound)
            .Produces<ErrorResponse>(StatusCodes.Status503ServiceUnavailable);
        return group;
    }

    private static async Task<IResult> CreateAsync(CreateClusterRequest? request, HttpContext http, ControlPlaneState state, ApiKeyDirectory keys, ProcessImageDirectory processImages, ServerOptionsAccessor edge, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var caller = Caller.From(http);
        var project = request.Project ?? caller.Project ?? ApiKeyDirectory.DefaultProject;
        if (!caller.InProject(project))
        {
            return ApiResults.Forbidden($"key {caller.KeyId} belongs to project '{caller.Project}', not '{project}'");
        }
        if (!keys.ProjectExists(project)) return ApiResults.BadRequest($"project '{project}' does not exist; create it first (shoal projects create {project})");
        var validated = ClusterSpecValidator.Validate(request, processImages.Policy);
        if (!validated.IsValid) return ApiResults.BadRequest(validated.Message);
        try
        {
            var view = await state.CreateClusterViewAsync(validated.Value!, project, caller.Actor, ct);
            var dto = view.ToDto(edge.EdgeUrl);
            return Results.Json(dto, ShoalJsonContext.Default.ClusterDto, statusCode: StatusCodes.Status201Created);
        }
        catch (StoreConflictException e)
        {
            return ApiResults.Conflict(e.Message);
        }
    }

    /// <summary><c>GET /v1/clusters[?project=P]</c>: the clusters of the caller's project (operators: all, or one project's).</summary>
    private static async Task<IResult> ListAsync(string? project, HttpContext http, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        var caller = Caller.From(http);
        var list = await state.ListClustersAsync(ct);
        var visible = list.Where(v => caller.InProject(v.Cluster.Project) && (project is null || v.Cluster.Project == project));
        return Results.Json(visible.Select(v => v.ToDto(edge.EdgeUrl)).ToArray(), ShoalJsonContext.Default.ClusterDtoArray);
    }

    private static async Task<IResult> GetAsync(string name, ControlPlaneState state, ServerOptionsAccessor edge, CancellationToken ct)
    {
        var view = await state.GetClusterAsync(name, ct);
        return view is null ? NotFound(name) : Results.Json(view.ToDto(edge.EdgeUrl), ShoalJsonContext.Default.ClusterDto);
    }

    /// <summary>
    /// <c>PATCH /v1/clusters/{name}</c>: scale, change settings, or update what replicas run (image,
    /// env, args, port, health), which starts a rolling update to a new generation.
    /// </summary>
    private static async Task<IResult> UpdateAsync(string name, UpdateClusterRequest? request, HttpContext http, ControlPlaneState state, ProcessImageDirectory processImages, ServerOptionsAccessor edge, CancellationToken ct)
    {
        if (request is null) return ApiResults.BadRequest("request body is required");
        var outcome = await state.UpdateClusterAsync(name, request, processImages.Policy, Caller.From(http).Actor, ct);
        if (outcome.NotFound) return NotFound(name);
        if (outcome.Error is { } error) return ApiResults.BadRequest(error);
        var view = await state.GetClusterAsync(name, ct);
        return view is null ? NotFound(name) : Results.Json(view.ToDto(edge.EdgeUrl), ShoalJsonContext.Default.ClusterDto);
    }

    private static async Task<IResult> DeleteAsync(string name, HttpContext http, ControlPlaneState state, ILoggerFactory logs, CancellationToken ct)
    {
        if (!await state.DeleteClusterAsync(name, ct)) return NotFound(name);
        // Its events go with it: the deletion's actor is in the server log.
        var logger = logs.CreateLogger("Shoal.Api");
        var actor = Caller.From(http).Actor;
        LogClusterDeleted(logger, name, actor);
        return Results.NoContent();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} deleted by {Actor}")]
    private static partial void LogClusterDeleted(ILogger logger, string name, string actor);

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

    /// <summary>Most events <c>GET /v1/clusters/{name}/events</c> returns when no limit is given.</summary>
    public const int DefaultEventLimit = 100;

    /// <summary><c>GET /v1/clusters/{name}/events?limit=N</c>: the last N events (default 100, at most 1,000), oldest first.</summary>
    private static async Task<IResult> EventsAsync(string name, int? limit, ControlPlaneState state, CancellationToken ct)
    {
        if (limit is < 1 or > ClusterEventRecord.RetainedPerCluster)
        {
            return ApiResults.BadRequest($"limit must be between 1 and {ClusterEventRecord.RetainedPerCluster}");
        }
        var events = await state.ListEventsAsync(name, limit ?? DefaultEventLimit, ct);
        return events is null ? NotFound(name) : Results.Json(events.Select(e => e.ToDto()).ToArray(), ShoalJsonContext.Default.ClusterEventDtoArray);
    }

    /// <summary>
    /// <c>GET /v1/clusters/{name}/logs?replica=ID&amp;follow=true&amp;tail=N</c>: the replicas' output,
    /// streamed from their nodes as text. Several replicas are merged line by line, each line
    /// prefixed with <c>[replica-id] </c>.
    /// </summary>
    private static async Task LogsAsync(HttpContext context, string name, string? replica, bool? follow, int? tail, ControlPlaneState state, AgentGateway gateway)
    {
        var ct = context.RequestAborted;
        var view = await state.GetClusterAsync(name, ct);
        if (view is null)
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{name}' not found");
            return;
        }
        if (tail is < 0)
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, "tail cannot be negative");
            return;
        }
        var chosen = view.Replicas.Where(r => r.Replica.NodeId is not null && (replica is null || r.Replica.Id == replica)).ToList();
        if (replica is not null && chosen.Count == 0)
        {
            var exists = view.Replicas.Any(r => r.Replica.Id == replica);
            await ApiResults.WriteAsync(context,
                exists ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status404NotFound,
                exists ? ErrorCodes.Unavailable : ErrorCodes.NotFound,
                exists ? $"replica '{replica}' is not placed on a node yet" : $"replica '{replica}' not found in cluster '{name}'");
            return;
        }

        context.Response.ContentType = "text/plain; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        await context.Response.StartAsync(ct);
        var body = context.Response.Body;
        using var writeLock = new SemaphoreSlim(1, 1);
        async Task WriteAsync(string text)
        {
            await writeLock.WaitAsync(ct);
            try
            {
                await body.WriteAsync(Encoding.UTF8.GetBytes(text), ct);
                await body.FlushAsync(ct);
            }
            finally
            {
                writeLock.Release();
            }
        }

        var prefix = chosen.Count > 1;
        var streams = chosen.Select(async r =>
        {
            var id = r.Replica.Id;
            var lines = new LinePrefixer(prefix ? $"[{id}] " : "");
            try
            {
                await gateway.StreamLogsAsync(r.Replica.NodeId!, id, follow ?? false, tail, text => WriteAsync(lines.Add(text)), ct);
                if (lines.Flush() is { Length: > 0 } rest)
                {
                    await WriteAsync(rest);
                }
            }
            catch (IOException e)
            {
                await WriteAsync(lines.Flush() + $"{lines.Prefix}shoal: logs of {id} unavailable: {e.Message}\n");
            }
        });
        try
        {
            await Task.WhenAll(streams);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private static IResult NotFound(string name) => ApiResults.NotFound($"cluster '{name}' not found");
}

/// <summary>Puts a prefix in front of every line of a stream that arrives in arbitrary pieces.</summary>
internal sealed class LinePrefixer(string prefix)
{
    private readonly StringBuilder _partial = new();

    public string Prefix => prefix;

    /// <summary>The complete lines in <paramref name="text"/> (with what was left over before), prefixed.</summary>
    public string Add(string text)
    {
        if (prefix.Length == 0)
        {
            return text;
        }
        var output = new StringBuilder();
        foreach (var c in text)
        {
            _partial.Append(c);
            if (c == '\n')
            {
                output.Append(prefix).Append(_partial);
                _partial.Clear();
            }
        }
        return output.ToString();
    }

    /// <summary>An unterminated last line, prefixed and terminated; empty when there is none.</summary>
    public string Flush()
    {
        if (_partial.Length == 0)
        {
            return "";
        }
        var line = prefix + _partial + "\n";
        _partial.Clear();
        return line;
    }
}

/// <summary>The public edge URL, for showing endpoints.</summary>
public sealed record ServerOptionsAccessor(string EdgeUrl);
