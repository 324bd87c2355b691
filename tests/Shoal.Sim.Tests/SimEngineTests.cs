using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Shoal.Testing;

namespace Shoal.Sim.Tests;

public sealed class SimEngineTests
{
    private static SimOptions Options(int slots = 8, string gpu = "rtx-4090") => new()
    {
        BatchSlots = slots,
        GpuType = gpu,
        PrefillPerToken = TimeSpan.FromMilliseconds(1),
        DecodePerToken = TimeSpan.FromMilliseconds(10),
        BatchSlowdown = 0.1,
        KvCacheTokens = 1000,
    };

    /// <summary>Collects tokens and the fake time each arrived at.</summary>
    private sealed class Recorder(FakeTimeProvider time)
    {
        private readonly DateTimeOffset _start = time.GetUtcNow();

        public ConcurrentQueue<(string Token, TimeSpan At)> Tokens { get; } = new();

        public ValueTask OnToken(string token, CancellationToken ct)
        {
            Tokens.Enqueue((token, time.GetUtcNow() - _start));
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task First_token_comes_after_prefill_plus_one_step_then_one_per_step()
    {
        var time = new FakeTimeProvider();
        var engine = new SimEngine(Options(), time);
        var recorder = new Recorder(time);

        var run = engine.GenerateAsync(new GenerationRequest(PromptTokens: 10, MaxTokens: 3, TextSeed: 1), recorder.OnToken, CancellationToken.None);

        time.Advance(TimeSpan.FromMilliseconds(19));
        Assert.Empty(recorder.Tokens);
        time.Advance(TimeSpan.FromMilliseconds(1));
        await Eventually.GetAsync(() => Task.FromResult(recorder.Tokens.Count), n => n == 1, what: "first token");
        Assert.Equal(TimeSpan.FromMilliseconds(20), recorder.Tokens.Single().At);

        time.Advance(TimeSpan.FromMilliseconds(10));
        await Eventually.GetAsync(() => Task.FromResult(recorder.Tokens.Count), n => n == 2, what: "second token");
        time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.True(await run.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal([20.0, 30.0, 40.0], recorder.Tokens.Select(t => t.At.TotalMilliseconds));

        var (_, ttftSum, ttftCount) = engine.Metrics.TimeToFirstToken.Snapshot();
        Assert.Equal(1, ttftCount);
        Assert.Equal(0.020, ttftSum, 6);
        var (_, e2eSum, _) = engine.Metrics.RequestLatency.Snapshot();
        Assert.Equal(0.040, e2eSum, 6);
        Assert.Equal(10, engine.Metrics.PromptTokens);
        Assert.Equal(3, engine.Metrics.GenerationTokens);
        Assert.Equal(0, engine.Scheduler.Running);
    }

    [Fact]
    public async Task With_one_slot_the_second_request_waits_and_its_ttft_includes_the_queue()
    {
        var time = new FakeTimeProvider();
        var engine = new SimEngine(Options(slots: 1), time);
        var first = new Recorder(time);
        var second = new Recorder(time);

        var a = engine.GenerateAsync(new GenerationRequest(0, 2, 1), first.OnToken, CancellationToken.None);
        var b = engine.GenerateAsync(new GenerationRequest(0, 2, 2), second.OnToken, CancellationToken.None);
        Assert.Equal(1, engine.Scheduler.Running);
        Assert.Equal(1, engine.Scheduler.Waiting);
        Assert.Contains("vllm:num_requests_waiting{model_name=\"shoal-sim\"} 1.0", engine.RenderMetrics(), StringComparison.Ordinal);

        for (var i = 0; i < 2; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(10));
            await Eventually.GetAsync(() => Task.FromResult(first.Tokens.Count), n => n == i + 1, what: "token of the first request");
        }
        Assert.True(await a.WaitAsync(TimeSpan.FromSeconds(5)));
        await Eventually.GetAsync(() => Task.FromResult(engine.Scheduler.Waiting), n => n == 0, what: "second request admitted");
        Assert.Empty(second.Tokens);

        for (var i = 0; i < 2; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(10));
            await Eventually.GetAsync(() => Task.FromResult(second.Tokens.Count), n => n == i + 1, what: "token of the second request");
        }
        Assert.True(await b.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(30, second.Tokens.First().At.TotalMilliseconds);
        var (_, ttftSum, ttftCount) = engine.Metrics.TimeToFirstToken.Snapshot();
        Assert.Equal(2, ttftCount);
        Assert.Equal(0.010 + 0.030, ttftSum, 6);
    }

    [Fact]
    public async Task Decode_slows_down_as_the_batch_grows()
    {
        var time = new FakeTimeProvider();
        var engine = new SimEngine(Options(slots: 8), time);
        var recorder = new Recorder(time);
        var other = new Recorder(time);

        var a = engine.GenerateAsync(new GenerationRequest(0, 2, 1), recorder.OnToken, CancellationToken.None);
        var b = engine.GenerateAsync(new GenerationRequest(0, 2, 2), other.OnToken, CancellationToken.None);
        Assert.Equal(2, engine.Scheduler.Running);

        // A step's length is set when it starts: the first request's first step began alone (10 ms);
        // every later step runs with two in the batch (10 ms × 1.1 = 11 ms).
        for (var i = 0; i < 22; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(1));
            await Task.Yield();
        }
        await Task.WhenAll(a, b).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal([10.0, 21.0], recorder.Tokens.Select(t => t.At.TotalMilliseconds));
        Assert.Equal([11.0, 22.0], other.Tokens.Select(t => t.At.TotalMilliseconds));
    }

    [Fact]
    public async Task A_slower_gpu_takes_longer_for_the_same_request()
    {
        static async Task<double> E2eSecondsAsync(string gpu)
        {
            var time = new FakeTimeProvider();
            var engine = new SimEngine(Options(gpu: gpu), time);
            var run = engine.GenerateAsync(new GenerationRequest(100, 8, 1), (_, _) => ValueTask.CompletedTask, CancellationToken.None);
            for (var i = 0; i < 10_000 && !run.IsCompleted; i++)
            {
                time.Advance(TimeSpan.FromMilliseconds(1));
                await Task.Yield();
            }
            Assert.True(await run.WaitAsync(TimeSpan.FromSeconds(5)));
            return engine.Metrics.RequestLatency.Snapshot().Sum;
        }

        var rtx4090 = await E2eSecondsAsync("rtx-4090");
        var rtx3090 = await E2eSecondsAsync("rtx-3090");
        Assert.Equal(0.100 + 0.080, rtx4090, 3);
        Assert.Equal(0.360, rtx3090, 3);
    }

    [Fact]
    public async Task Cancelling_a_running_request_frees_its_slot_at_once()
    {
        var time = new FakeTimeProvider();
        var engine = new SimEngine(Options(slots: 1), time);
        using var cts = new CancellationTokenSource();
        var running = engine.GenerateAsync(new GenerationRequest(10, 100, 1), (_, _) => ValueTask.CompletedTask, cts.Token);
        var waiting = engine.GenerateAsync(new GenerationRequest(10, 1, 2), (_, _) => ValueTask.CompletedTask, CancellationToken.None);
        Assert.Equal(1, engine.Scheduler.Waiting);

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        await Eventually.GetAsync(() => Task.FromResult(engine.Scheduler.Waiting), n => n == 0, what: "waiter admitted");
        Assert.Equal(1, engine.Scheduler.Running);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, engine.Scheduler.Running);
        Assert.Equal(0.0, engine.CacheUsage);
    }

    [Fact]
    public async Task Cache_usage_counts_prompt_and_generated_tokens_of_running_requests()
    {
        var time = new FakeTimeProvider();
        var engine = new SimEngine(Options(), time);
        var recorder = new Recorder(time);
        var run = engine.GenerateAsync(new GenerationRequest(100, 3, 1), recorder.OnToken, CancellationToken.None);
        Assert.Equal(0.1, engine.CacheUsage, 6);

        time.Advance(TimeSpan.FromMilliseconds(110));
        await Eventually.GetAsync(() => Task.FromResult(recorder.Tokens.Count), n => n == 1, what: "first token");
        Assert.Equal(0.101, engine.CacheUsage, 6);
        Assert.Contains("vllm:gpu_cache_usage_perc{model_name=\"shoal-sim\"} 0.101", engine.RenderMetrics(), StringComparison.Ordinal);

        time.Advance(TimeSpan.FromMilliseconds(20));
        Assert.True(await run.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0.0, engine.CacheUsage);
    }

    [Fact]
    public async Task A_full_queue_refuses_without_producing_tokens()
    {
        var time = new FakeTimeProvider();
        var options = Options(slots: 1);
        options.MaxQueue = 0;
        var engine = new SimEngine(options, time);
        _ = engine.GenerateAsync(new GenerationRequest(1, 1, 1), (_, _) => ValueTask.CompletedTask, CancellationToken.None);
        var produced = 0;
        var admitted = await engine.GenerateAsync(new GenerationRequest(1, 1, 2), (_, _) => { produced++; return ValueTask.CompletedTask; }, CancellationToken.None);
        Assert.False(admitted);
        Assert.Equal(0, produced);
    }
}
