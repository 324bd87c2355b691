namespace Shoal.Sim;

/// <summary>One generation to run: its prompt size, how many tokens to produce, and the seed of its text.</summary>
public sealed record GenerationRequest(int PromptTokens, int MaxTokens, int TextSeed);

/// <summary>
/// The simulated GPU: admits requests into batch slots (queueing the rest), then produces tokens
/// at the pace of the <see cref="LatencyModel"/> on the given clock, and keeps the metrics.
/// </summary>
public sealed class SimEngine
{
    private long _tokensInUse;

    public SimEngine(SimOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ThrowIfInvalid();
        Options = options;
        Time = time ?? TimeProvider.System;
        Scheduler = new BatchScheduler(options.BatchSlots, options.MaxQueue);
        Latency = LatencyModel.From(options);
        Metrics = new SimMetrics(options.Model);
        Faults = new FaultInjector(options.Seed, options.ErrorRate, options.HangRate, options.CrashAfterRequests);
        Startup = new StartupGate(Time, options.StartupDelay);
    }

    public SimOptions Options { get; }

    public TimeProvider Time { get; }

    public BatchScheduler Scheduler { get; }

    public LatencyModel Latency { get; }

    public SimMetrics Metrics { get; private set; }

    public FaultInjector Faults { get; }

    public StartupGate Startup { get; }

    /// <summary>The secret that marks the simulator's own warm-up requests (they pass the startup gate and count nowhere); null when it warms up no more.</summary>
    internal string? WarmUpToken { get; private set; }

    internal void BeginWarmUp(string token) => WarmUpToken = token;

    /// <summary>Ends the warm-up: its requests leave no trace in the metrics (while the model still loads, so no other request is counted there).</summary>
    internal void EndWarmUp()
    {
        WarmUpToken = null;
        if (!Startup.IsReady) Metrics = new SimMetrics(Options.Model);
    }

    /// <summary>True when <paramref name="token"/> marks a warm-up request of this simulator.</summary>
    internal bool IsWarmUp(string? token) => WarmUpToken is { } own && token is not null
        && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(own), System.Text.Encoding.UTF8.GetBytes(token));

    /// <summary>Fraction of the simulated KV cache held by running requests (prompt plus tokens so far), 0 to 1.</summary>
    public double CacheUsage => Math.Min(1.0, (double)Interlocked.Read(ref _tokensInUse) / Options.KvCacheTokens);

    /// <summary>The Prometheus text of every metric now.</summary>
    public string RenderMetrics() => Metrics.Render(Scheduler.Running, Scheduler.Waiting, CacheUsage);

    /// <summary>The metrics with <paramref name="load"/> in place of the running and waiting counts (NaN: a replica whose load gauges broke).</summary>
    public string RenderMetrics(double load) => Metrics.Render(load, load, CacheUsage);

    /// <summary>
    /// Runs one request: waits for a slot, then calls <paramref name="onToken"/> with each token as it is
    /// produced. Returns false, having produced nothing, when the queue is full. Cancelling frees the
    /// request's slot (or its place in the queue) at once and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public async Task<bool> GenerateAsync(GenerationRequest request, Func<string, CancellationToken, ValueTask> onToken, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(onToken);
        var arrived = Time.GetTimestamp();
        using var lease = await Scheduler.AcquireAsync(ct).ConfigureAwait(false);
        if (lease is null)
        {
            return false;
        }
        long held = request.PromptTokens;
        Interlocked.Add(ref _tokensInUse, held);
        try
        {
            var next = TokenText.Generator(request.TextSeed);
            var started = Time.GetTimestamp();
            var due = TimeSpan.Zero;
            for (var i = 0; i < request.MaxTokens; i++)
            {
                // Deadlines are kept from the start, so timer lateness does not add up over a long answer.
                due += i == 0
                    ? Latency.FirstToken(request.PromptTokens, Scheduler.Running)
                    : Latency.DecodeStep(Scheduler.Running);
                var remaining = due - Time.GetElapsedTime(started);
                if (remaining > TimeSpan.Zero)
                {
                    await Task.Delay(remaining, Time, ct).ConfigureAwait(false);
                }
                ct.ThrowIfCancellationRequested();
                if (i == 0)
                {
                    Metrics.TimeToFirstToken.Observe(Time.GetElapsedTime(arrived).TotalSeconds);
                    Metrics.AddPromptTokens(request.PromptTokens);
                }
                Interlocked.Increment(ref _tokensInUse);
                held++;
                Metrics.AddGenerationTokens(1);
                await onToken(next(i), ct).ConfigureAwait(false);
            }
            Metrics.RequestLatency.Observe(Time.GetElapsedTime(arrived).TotalSeconds);
            Metrics.RequestSucceeded();
            return true;
        }
        finally
        {
            Interlocked.Add(ref _tokensInUse, -held);
        }
    }
}
