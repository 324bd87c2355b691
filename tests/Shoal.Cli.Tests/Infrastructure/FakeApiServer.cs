using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Infrastructure;

/// <summary>One request the fake server received.</summary>
public sealed record RecordedRequest(string Method, string Path, string Body, string? Authorization = null);

/// <summary>A canned answer: status code and raw body (null for none).</summary>
public sealed record CannedResponse(int Status, string? Body, string ContentType = "application/json")
{
    public static CannedResponse Json<T>(T value, JsonTypeInfo<T> type, int status = 200) =>
        new(status, JsonSerializer.Serialize(value, type));

    public static CannedResponse Error(int status, string code, string message) =>
        new(status, JsonSerializer.Serialize(new ErrorResponse(new ErrorBody(code, message, status)), ShoalJsonContext.Default.ErrorResponse));

    public static CannedResponse NoContent { get; } = new(204, null);
}

/// <summary>A real Kestrel server on 127.0.0.1:0 answering "METHOD /path" with canned responses and recording what it got.</summary>
public sealed class FakeApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, Func<RecordedRequest, CannedResponse>> _routes = new(StringComparer.Ordinal);

    private FakeApiServer(WebApplication app)
    {
        _app = app;
    }

    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    public string Address { get; private set; } = "";

    public static async Task<FakeApiServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new FakeApiServer(app);
        app.Run(server.HandleAsync);
        await app.StartAsync();
        server.Address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return server;
    }

    /// <summary>Answers <paramref name="method"/> <paramref name="path"/> with <paramref name="response"/>.</summary>
    public FakeApiServer On(string method, string path, CannedResponse response) => On(method, path, _ => response);

    public FakeApiServer On(string method, string path, Func<RecordedRequest, CannedResponse> respond)
    {
        _routes[$"{method} {path}"] = respond;
        return this;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var authorization = context.Request.Headers.Authorization.ToString();
        var request = new RecordedRequest(context.Request.Method, context.Request.Path.Value ?? "", await reader.ReadToEndAsync(), authorization.Length == 0 ? null : authorization);
        Requests.Enqueue(request);
        var response = _routes.TryGetValue($"{request.Method} {request.Path}", out var respond)
            ? respond(request)
            : CannedResponse.Error(404, ErrorCodes.NotFound, $"no canned route for {request.Method} {request.Path}");
        context.Response.StatusCode = response.Status;
        if (response.Body is not null)
        {
            context.Response.ContentType = response.ContentType;
            await context.Response.WriteAsync(response.Body);
        }
    }
}
