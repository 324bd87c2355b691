using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using Shoal.Contracts;
using Shoal.ControlPlane.Edges;
using Shoal.ControlPlane.State;
using Shoal.Core.Clusters;
using Shoal.Core.Security;
using Shoal.Store;

namespace Shoal.ControlPlane.Agents;

/// <summary>
/// The agent end of the control plane: <c>/v1/agent/connect</c>. Authenticates on the upgrade
/// (provisioning token for a new node, node id + secret for a returning one), then runs the
/// session: hello → welcome + assignments; heartbeats and acks; assignment pushes on change.
/// A bad message closes only that connection, with 1008.
/// </summary>
public sealed partial class AgentGateway
{
    private static readonly TimeSpan s_helloTimeout = TimeSpan.FromSeconds(10);

    private readonly ControlPlaneState _state;
    private readonly IShoalStore _store;
    private readonly TimeProvider _time;
    private readonly ServerOptions _options;
    private readonly ILogger<AgentGateway> _logger;
    private readonly ConcurrentDictionary<string, AgentSession> _sessions = new(StringComparer.Ordinal);
    private readonly EdgeDirectory _edges;
    private readonly ProcessImageDirectory _processImages;
    private readonly CancellationToken _stopping;

    public AgentGateway(ControlPlaneState state, IShoalStore store, TimeProvider time, ServerOptions options, EdgeDirectory edges, ProcessImageDirectory processImages, IHostApplicationLifetime lifetime, ILogger<AgentGateway> logger)
    {
        _processImages = processImages;
        _stopping = lifetime.ApplicationStopping;
        _edges = edges;
        _edges.Changed += urls =>
        {
            var message = new EdgesMessage { Edges = urls };
            foreach (var session in _sessions.Values) session.Enqueue(message);
        };
        _state = state;
        _store = store;
        _time = time;
        _options = options;
        _logger = logger;
        _state.AssignmentsChanged += nodes => _ = PushAssignmentsAsync(nodes);
    }

    /// <summary>Number of agents connected right now.</summary>
    public int ConnectedCount => _sessions.Count;

    public async Task HandleAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, "this endpoint takes a WebSocket upgrade");
            return;
        }

        var auth = await AuthenticateAsync(context.Request.Headers, context.RequestAborted);
        if (auth.Error is not null)
        {
            LogRefused(_logger, context.Connection.RemoteIpAddress?.ToString() ?? "?", auth.Error);
            await ApiResults.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, auth.Error);
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        await RunSessionAsync(new AgentSession(socket, auth.NodeId!), auth.NewSecret, context.RequestAborted);
    }

    private async Task<AuthResult> AuthenticateAsync(IHeaderDictionary headers, CancellationToken ct)
    {
        var nodeId = headers[AgentProtocol.NodeIdHeader].ToString();
        var secret = headers[AgentProtocol.NodeSecretHeader].ToString();
        var token = headers[AgentProtocol.ProvisioningTokenHeader].ToString();

        if (nodeId.Length > 0 || secret.Length > 0)
        {
            var hash = nodeId.Length is > 0 and <= 64 ? await _state.GetNodeSecretHashAsync(nodeId, ct) : null;
            // Hash anyway so an unknown id takes as long as a wrong secret.
            var ok = Secrets.Matches(secret, hash ?? new string('0', 64)) && hash is not null && secret.Length > 0;
            return ok ? new AuthResult(nodeId, null, null) : new AuthResult(null, null, "unknown node or wrong node secret");
        }

        if (token.Length == 0)
        {
            return new AuthResult(null, null,
                $"missing credentials: send {AgentProtocol.ProvisioningTokenHeader}, or {AgentProtocol.NodeIdHeader} and {AgentProtocol.NodeSecretHeader}");
        }

        // A name another node has would make `shoal nodes cordon NAME` ambiguous: refuse it before the token is used.
        var requested = headers[AgentProtocol.NodeNameHeader].ToString().Trim().ToLowerInvariant();
        var name = ClusterSpecValidator.IsValidName(requested) ? requested : "node-" + Secrets.RandomId(6);
        if (await _state.NodeNameTakenAsync(name, ct))
        {
            return new AuthResult(null, null, $"a node named '{name}' is already registered: give this one another name (shoal agent --name), or remove the old one first (shoal nodes rm {name})");
        }

        var tokenHash = Secrets.Hash(token);
        var outcome = token.Length > 256 ? TokenUseOutcome.NotFound : await _store.UseTokenAsync(tokenHash, _time.GetUtcNow(), ct);
        if (outcome != TokenUseOutcome.Accepted)
        {
            return new AuthResult(null, null, outcome switch
            {
                TokenUseOutcome.Expired => "provisioning token has expired",
                TokenUseOutcome.Revoked => "provisioning token was revoked",
                TokenUseOutcome.Exhausted => "provisioning token has already been used",
                _ => "unknown provisioning token",
            });
        }

        var newSecret = Secrets.NewToken("shoal_ns_");
        // The token's policy (approval, GPU cap, labels, direct mode) becomes the node's.
        var policy = await _store.FindTokenAsync(tokenHash, ct);
        var node = await _state.RegisterNodeAsync(name, Secrets.Hash(newSecret), policy, ct);
        return new AuthResult(node.Id, newSecret, null);
    }

    private async Task RunSessionAsync(AgentSession session, string? newSecret, CancellationToken requestAborted)
    {
        // Sessions end when the server begins to stop (else the host would wait out its shutdown
        // timeout on them); the agents reconnect to the next server.
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(requestAborted, _stopping);
        var ct = cts.Token;
        var writer = session.RunWriterAsync(ct);
        var reason = "connection closed";
        var buffer = new byte[16 * 1024];
        using var assembled = new MemoryStream();
        var registered = false;
        var planned = false;
        try
        {
            using (var helloTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                helloTimeout.CancelAfter(s_helloTimeout);
                var first = await session.ReadAsync(buffer, assembled, helloTimeout.Token);
                if (first.IsClosed) return;
                if (first.Message is not HelloMessage hello)
                {
                    reason = first.ViolationReason ?? "the first message must be hello";
                    await ViolationAsync(session, reason);
                    return;
                }
                if ((Validate(hello) ?? await _state.CheckHelloAsync(session.NodeId, hello, ct)) is { } invalid)
                {
                    reason = invalid;
                    await ViolationAsync(session, invalid);
                    return;
                }

                if (_sessions.TryGetValue(session.NodeId, out var previous))
                {
                    await previous.CloseAsync(WebSocketCloseStatus.NormalClosure, "replaced by a newer connection");
                }
                _sessions[session.NodeId] = session;
                registered = true;
                _processImages.NodeSaidHello(session.NodeId, hello);
                var assignments = await _state.NodeConnectedAsync(session.NodeId, session, hello, ct);
                session.Welcome(new WelcomeMessage
                {
                    NodeId = session.NodeId,
                    NodeSecret = newSecret,
                    HeartbeatIntervalMs = (int)_options.HeartbeatInterval.TotalMilliseconds,
                    Edges = _edges.Urls,
                });
                session.Enqueue(assignments);
            }

            while (!ct.IsCancellationRequested)
            {
                var read = await session.ReadAsync(buffer, assembled, ct);
                if (read.IsClosed)
                {
                    // An agent stopping on purpose (SIGTERM, Ctrl-C, an upgrade) says so: not a drop.
                    planned = session.Socket.CloseStatus == WebSocketCloseStatus.NormalClosure
                        && session.Socket.CloseStatusDescription == AgentProtocol.AgentStoppingCloseDescription;
                    reason = planned ? "the agent stopped" : "closed by agent";
                    await session.CloseAsync(WebSocketCloseStatus.NormalClosure, "");
                    break;
                }
                switch (read.Message)
                {
                    case HeartbeatMessage hb:
                        var started = Stopwatch.GetTimestamp();
                        await _state.HeartbeatAsync(session.NodeId, session, hb, ct);
                        AgentGatewayMetrics.HeartbeatDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                        break;
                    case AckMessage ack:
                        await _state.AckAsync(session.NodeId, session, ack.Revision, ct);
                        break;
                    case LogsDataMessage logs:
                        session.Logs.Deliver(logs);
                        break;
                    default:
                        reason = read.ViolationReason ?? $"unexpected message from an agent: {read.Message?.GetType().Name}";
                        await ViolationAsync(session, reason);
                        return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            reason = "connection aborted";
        }
        catch (WebSocketException e)
        {
            reason = e.Message;
        }
        finally
        {
            session.Logs.FailAll($"the connection to node {session.NodeId} ended");
            session.Complete();
            await cts.CancelAsync();
            try
            {
                await writer;
            }
            catch (Exception e) when (e is OperationCanceledException or WebSocketException or ObjectDisposedException)
            {
            }
            if (registered)
            {
                _sessions.TryRemove(new KeyValuePair<string, AgentSession>(session.NodeId, session));
                // A stopping server is not the node's doing: no node-lost (the next start counts the
                // grace from its own start), and no route table without the node's replicas.
                if (!_stopping.IsCancellationRequested) await _state.NodeDisconnectedAsync(session.NodeId, session, reason, planned);
            }
        }
    }

    private async Task ViolationAsync(AgentSession session, string reason)
    {
        LogViolation(_logger, session.NodeId, reason);
        await session.CloseAsync(WebSocketCloseStatus.PolicyViolation, reason);
    }

    private static string? Validate(HelloMessage hello)
    {
        if (string.IsNullOrWhiteSpace(hello.NodeName) || hello.NodeName.Length > 253) return "hello: nodeName must be 1-253 characters";
        if (hello.Hardware.Gpus.Length > 64) return "hello: more than 64 GPUs";
        if (hello.Hardware.Gpus.Any(g => string.IsNullOrWhiteSpace(g.Type) || g.Index < 0)) return "hello: every GPU needs a type and an index";
        if (hello.Hardware.Gpus.Select(g => g.Index).Distinct().Count() != hello.Hardware.Gpus.Length) return "hello: GPU indexes must be unique";
        if (hello.Address.Length > 253) return "hello: address too long";
        if (hello.ProcessImages.Length > 1024 || hello.ProcessImages.Any(i => i is null || i.Length > 512)) return "hello: at most 1024 process images of at most 512 characters";
        if (hello.AllowedEnv.Length > 1024 || hello.AllowedEnv.Any(n => n is null || n.Length > 256)) return "hello: at most 1024 allowed env names of at most 256 characters";
        return null;
    }

    /// <summary>Sends the current assignment set to each of these nodes that is connected.</summary>
    public async Task PushAssignmentsAsync(IReadOnlyCollection<string> nodeIds)
    {
        var connected = nodeIds.Where(_sessions.ContainsKey).ToList();
        if (connected.Count == 0) return;
        try
        {
            foreach (var (id, assignments) in await _state.GetAssignmentsAsync(connected, CancellationToken.None))
            {
                if (_sessions.TryGetValue(id, out var session)) session.Enqueue(assignments);
            }
        }
        catch (Exception e)
        {
            LogPushFailed(_logger, string.Join(',', connected.Take(5)), e);
        }
    }

    /// <summary>
    /// Streams a replica's output from its node: asks the agent for it, then hands each piece to
    /// <paramref name="write"/> until the agent ends the stream or <paramref name="ct"/> is cancelled.
    /// </summary>
    /// <exception cref="IOException">The node is not connected, or the stream broke off.</exception>
    public async Task StreamLogsAsync(string nodeId, string replicaId, bool follow, int? tail, Func<string, Task> write, CancellationToken ct)
    {
        if (!_sessions.TryGetValue(nodeId, out var session))
        {
            throw new IOException($"node {nodeId} is not connected");
        }
        var requestId = Secrets.RandomId(16);
        var reader = session.Logs.Open(requestId);
        session.Enqueue(new LogsRequestMessage { RequestId = requestId, ReplicaId = replicaId, Follow = follow, Tail = tail });
        var ended = false;
        try
        {
            await foreach (var chunk in reader.ReadAllAsync(ct))
            {
                if (chunk.Error is { } error)
                {
                    ended = true;
                    throw new IOException(error);
                }
                if (chunk.Data.Length > 0)
                {
                    await write(chunk.Data);
                }
                if (chunk.End)
                {
                    ended = true;
                    break;
                }
            }
            ended = true;
        }
        finally
        {
            session.Logs.Close(requestId);
            if (!ended)
            {
                session.Enqueue(new LogsCancelMessage { RequestId = requestId });
            }
        }
    }

    /// <summary>Closes sessions of agents that stopped sending heartbeats.</summary>
    public async Task CloseStaleSessionsAsync(CancellationToken ct)
    {
        // A stopping server no longer reads heartbeats: silence then is its own doing, not the agents'. Marked
        // lost, every node would carry a disconnect into the next start (a flapping record), once a shutdown
        // with thousands of agents took longer than the missed-heartbeat rule.
        if (_stopping.IsCancellationRequested) return;
        var stale = await _state.FindStaleSessionsAsync(ct);
        if (stale.Count == 0) return;
        // Mark every one first, so the reason recorded is this one and not the aborted socket's, and so
        // a silent agent that never answers the close does not hold back the marking of the others.
        foreach (var (nodeId, _) in stale)
        {
            LogStale(_logger, nodeId, _options.MissedHeartbeats);
            AgentGatewayMetrics.StaleClosed.Add(1);
        }
        await _state.NodesDisconnectedAsync(stale, "missed heartbeats");
        await Task.WhenAll(stale.Select(async s =>
        {
            var session = (AgentSession)s.Session;
            await session.CloseAsync(WebSocketCloseStatus.PolicyViolation, "missed heartbeats");
            session.Socket.Abort();
        }));
    }

    private readonly record struct AuthResult(string? NodeId, string? NewSecret, string? Error);
}
