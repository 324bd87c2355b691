using System.Diagnostics;
using Shoal.ControlPlane.Agents;
using Shoal.ControlPlane.State;
using Shoal.Core.Routing;

namespace Shoal.ControlPlane.Reconciliation;

/// <summary>
/// The control plane's background work: the reconciler (on every change and on a sweep; also
/// closes sessions that missed heartbeats), the flusher of observed state, and the route-table
/// publisher. A loop that keeps failing stops the host rather than limping on.
/// </summary>
public sealed partial class ControlLoops : BackgroundService
{
    private const int MaxConsecutiveFailures = 20;

    private readonly ControlPlaneState _state;
    private readonly AgentGateway _gateway;
    private readonly RouteTableHolder _routes;
    private readonly ServerOptions _options;
    private readonly TimeProvider _time;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger<ControlLoops> _logger;
    private readonly Signal _reconcile = new();
    private readonly Signal _flush = new();
    private readonly Signal _publish = new();
    private readonly Signal _liveness = new();
    private readonly Signal _autoscale = new();
    private readonly Autoscaling.DemandBook _demand;

    /// <summary>How often the autoscaler decides (and at once when an edge holds a request for a cluster at zero).</summary>
    public static readonly TimeSpan AutoscaleInterval = TimeSpan.FromSeconds(1);
    private long _lastPassEnded;

    /// <summary>A change this soon after the last reconcile pass is part of a burst.</summary>
    private static readonly TimeSpan s_burstWindow = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a pass in a burst waits for more changes (real time: a batching window, not a rule of the model).</summary>
    private static readonly TimeSpan s_burstGather = TimeSpan.FromMilliseconds(50);

    /// <summary>How often sessions are checked for missed heartbeats.</summary>
    public static readonly TimeSpan StaleCheckInterval = TimeSpan.FromMilliseconds(100);
    private long _routeVersion;

    public ControlLoops(ControlPlaneState state, AgentGateway gateway, RouteTableHolder routes, ServerOptions options,
        TimeProvider time, IHostApplicationLifetime lifetime, Autoscaling.DemandBook demand, ILogger<ControlLoops> logger)
    {
        _demand = demand;
        _demand.WakeRequested += _autoscale.Set;
        _state = state;
        _gateway = gateway;
        _routes = routes;
        _options = options;
        _time = time;
        _lifetime = lifetime;
        _logger = logger;
        _state.ReconcileNeeded += _reconcile.Set;
        _state.FlushNeeded += _flush.Set;
        _state.RoutesChanged += _publish.Set;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _reconcile.Set();
        _publish.Set();
        return Task.WhenAll(
            RunLoopAsync("reconciler", _reconcile, _options.ReconcileInterval, async ct =>
            {
                // In a burst of changes (a pass ended moments ago: say, a script deploying many
                // clusters) wait a moment so one pass takes many changes; a lone change goes at once.
                if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastPassEnded)) < s_burstWindow) await Task.Delay(s_burstGather, ct);
                await _state.ReconcileAsync(ct);
                Volatile.Write(ref _lastPassEnded, Stopwatch.GetTimestamp());
            }, stoppingToken),
            // Silent agents are looked for often (a scan without the state's lock), so one is marked
            // disconnected within its missed heartbeats plus at most this period.
            RunLoopAsync("liveness", _liveness, StaleCheckInterval, _gateway.CloseStaleSessionsAsync, stoppingToken),
            RunLoopAsync("autoscaler", _autoscale, AutoscaleInterval, ct => _state.AutoscaleAsync(_demand.Sum(), _demand.FirstServed, ct), stoppingToken),
            RunLoopAsync("flusher", _flush, TimeSpan.FromSeconds(5), async ct =>
            {
                // Coalesce a burst of heartbeats into one write.
                await Task.Delay(TimeSpan.FromMilliseconds(100), _time, ct);
                await _state.FlushAsync(ct);
            }, stoppingToken),
            RunLoopAsync("route publisher", _publish, TimeSpan.FromSeconds(5), async ct =>
            {
                _routes.Update(await _state.BuildRouteTableAsync(Interlocked.Increment(ref _routeVersion), ct));
            }, stoppingToken));
    }

    private async Task RunLoopAsync(string name, Signal signal, TimeSpan sweep, Func<CancellationToken, Task> body, CancellationToken ct)
    {
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await signal.WaitAsync(sweep, _time, ct);
                await body(ct);
                failures = 0;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                failures++;
                LogLoopFailed(_logger, name, failures, e);
                if (failures >= MaxConsecutiveFailures)
                {
                    LogLoopGaveUp(_logger, name, failures);
                    _lifetime.StopApplication();
                    return;
                }
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 100 * (1 << Math.Min(failures, 6)))), _time, ct);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                signal.Set();
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await _state.FlushAsync(cancellationToken);
        }
        catch (Exception e)
        {
            LogLoopFailed(_logger, "final flush", 1, e);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The {Loop} failed ({Failures} in a row); retrying")]
    private static partial void LogLoopFailed(ILogger logger, string loop, int failures, Exception exception);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The {Loop} failed {Failures} times in a row; stopping the server")]
    private static partial void LogLoopGaveUp(ILogger logger, string loop, int failures);
}
