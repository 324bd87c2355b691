using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Shoal.Sim;

/// <summary>
/// <c>shoal sim</c>: an OpenAI-compatible server that behaves like vLLM under load. The demo
/// workload of <c>shoal dev</c>, and the workload of tests and benchmarks.
/// </summary>
public static partial class SimServer
{
    /// <summary>
    /// Builds the web application (not started). <paramref name="time"/> drives the simulated GPU and
    /// the startup delay (a fake clock in tests); <paramref name="exit"/> is how an injected crash ends
    /// the process (default <see cref="Environment.Exit"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    public static WebApplication Build(SimOptions options, TimeProvider? time = null, Action<int>? exit = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ThrowIfInvalid();
        var engine = new SimEngine(options, time ?? TimeProvider.System);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = typeof(SimServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        // Per-request framework logs would swamp a benchmark; the simulator logs what matters itself.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = SimOptions.MaxBodyBytes;
            var address = options.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(options.Host);
            kestrel.Listen(address, options.Port);
        });
        builder.Services.AddSingleton(engine);

        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Shoal.Sim");
        var completions = new CompletionEndpoint(engine, exit ?? Environment.Exit, logger);

        app.Use((ctx, next) =>
        {
            ctx.Response.Headers["X-Shoal-Replica"] = options.Fingerprint;
            return next(ctx);
        });
        app.MapGet("/health", (HttpContext ctx) =>
        {
            if (engine.Startup.IsReady)
            {
                ctx.Response.StatusCode = StatusCodes.Status200OK;
                return Task.CompletedTask;
            }
            ctx.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            return ctx.Response.WriteAsync("model loading\n", ctx.RequestAborted);
        });
        app.MapGet("/metrics", (HttpContext ctx) =>
        {
            if (options.MetricsMode == SimMetricsMode.Fail)
            {
                ctx.Response.StatusCode = StatusCodes.Status500InternalServerError;
                return ctx.Response.WriteAsync("metrics unavailable\n", ctx.RequestAborted);
            }
            ctx.Response.ContentType = SimMetrics.ContentType;
            return ctx.Response.WriteAsync(options.MetricsMode == SimMetricsMode.NaN ? engine.RenderMetrics(double.NaN) : engine.RenderMetrics(), ctx.RequestAborted);
        });
        app.MapGet("/v1/models", (HttpContext ctx) => WriteModelsAsync(ctx, engine));
        app.MapPost("/v1/chat/completions", ctx => completions.HandleAsync(ctx, CompletionKind.Chat));
        app.MapPost("/v1/completions", ctx => completions.HandleAsync(ctx, CompletionKind.Text));
        return app;
    }

    /// <summary>Builds, starts and serves until <paramref name="ct"/> fires (or the host is told to stop).</summary>
    /// <exception cref="IOException">The address could not be bound.</exception>
    public static async Task RunAsync(SimOptions options, CancellationToken ct)
    {
        await using var app = Build(options);
        await app.StartAsync(ct);
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Shoal.Sim");
        var address = Address(app);
        var engine = Engine(app);
        if (options.StartupDelay > TimeSpan.Zero)
        {
            // Like a model server's warm-up pass, within the model load: the first requests after the
            // health check passes then run at speed, not through the code paths' first (JIT) runs.
            // Best effort: the health check passes when the delay is over, warmed up or not.
            engine.BeginWarmUp(Convert.ToHexString(RandomNumberGenerator.GetBytes(16)));
            _ = WarmUpAsync(address, engine, logger, ct);
        }
        LogListening(logger, address, options.Model, options.GpuType, options.EffectiveSpeed, options.BatchSlots, options.StartupDelay.TotalMilliseconds);
        await app.WaitForShutdownAsync(ct);
    }

    /// <summary>Header that marks the simulator's own warm-up requests (with a secret made at start).</summary>
    internal const string WarmUpHeader = "x-shoal-sim-warmup";

    /// <summary>
    /// Sends the simulator a few requests of each kind (chat and text, whole and streamed, at once)
    /// through its own HTTP endpoint, then forgets them: they count in no metric (unless the model
    /// load ended first and real requests are counted too). Bounded in time; a failure only means a
    /// colder first request.
    /// </summary>
    private static async Task WarmUpAsync(Uri address, SimEngine engine, ILogger logger, CancellationToken ct)
    {
        await Task.Yield();
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            using var client = new HttpClient { BaseAddress = address };
            client.DefaultRequestHeaders.Add(WarmUpHeader, engine.WarmUpToken);
            const string chat = "{\"model\":\"warm-up\",\"messages\":[{\"role\":\"user\",\"content\":\"warm up\"}],\"max_tokens\":1";
            const string text = "{\"model\":\"warm-up\",\"prompt\":\"warm up\",\"max_tokens\":1";
            // One round, at once, one token each: a handful of requests (a simulator with one batch slot warms up in a few prefills).
            await Task.WhenAll(
                Enumerable.Range(0, 3).Select(_ => SendAsync("/v1/chat/completions", chat + "}"))
                .Append(SendAsync("/v1/chat/completions", chat + ",\"stream\":true}"))
                .Append(SendAsync("/v1/completions", text + "}"))
                .Append(SendAsync("/v1/completions", text + ",\"stream\":true}")));

            async Task SendAsync(string path, string body)
            {
                using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
                using var response = await client.PostAsync(path, content, timeout.Token);
                await response.Content.ReadAsStringAsync(timeout.Token);
            }
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            LogWarmUpFailed(logger, e.Message);
        }
        finally
        {
            engine.EndWarmUp();
        }
    }

    /// <summary>The address a started application listens on, with the port actually bound (useful with port 0).</summary>
    public static Uri Address(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        var first = addresses?.FirstOrDefault() ?? throw new InvalidOperationException("the simulator has not been started");
        return new Uri(first);
    }

    /// <summary>The simulated GPU behind a built application, for tests and diagnostics.</summary>
    public static SimEngine Engine(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Services.GetRequiredService<SimEngine>();
    }

    private static Task WriteModelsAsync(HttpContext ctx, SimEngine engine)
    {
        if (!engine.Startup.IsReady)
        {
            return OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status503ServiceUnavailable, "the model is still loading", "service_unavailable", "model_loading");
        }
        var options = engine.Options;
        ctx.Response.ContentType = OpenAiJson.JsonContentType;
        using var json = new Utf8JsonWriter(ctx.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        json.WriteStartObject();
        json.WriteString("id", options.Model);
        json.WriteString("object", "model");
        json.WriteNumber("created", engine.Time.GetUtcNow().ToUnixTimeSeconds());
        json.WriteString("owned_by", "shoal");
        json.WriteString("root", options.Model);
        json.WriteNull("parent");
        json.WriteNumber("max_model_len", SimOptions.MaxTokensCap * 2);
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
        json.Flush();
        return ctx.Response.BodyWriter.FlushAsync(ctx.RequestAborted).AsTask();
    }
}
