using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Shoal.Testing;

namespace Shoal.Docker.Tests;

/// <summary>
/// A registry on 127.0.0.1 that has no images (the engine treats loopback registries as plain
/// HTTP): unknown repositories answer NAME_UNKNOWN and <c>web</c> has no tags (MANIFEST_UNKNOWN).
/// A private one wants Basic credentials for everything (the engine learns that from its ping)
/// and records the users that sent them. A refusing one answers 500 to everything, its ping
/// included. Each counts the requests it got.
/// </summary>
public sealed class FakeRegistry : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly bool _private;
    private readonly bool _refusing;
    private int _requests;

    private FakeRegistry(WebApplication app, string host, bool isPrivate, bool refusing)
    {
        _app = app;
        Host = host;
        _private = isPrivate;
        _refusing = refusing;
    }

    /// <summary>Requests received so far (pings included).</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary><c>127.0.0.1:port</c>, the registry part of image references.</summary>
    public string Host { get; }

    public ConcurrentQueue<string> AuthenticatedUsers { get; } = new();

    public static async Task<FakeRegistry> StartAsync(bool isPrivate = false, bool refusing = false)
    {
        var port = FreePort.Next();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var registry = new FakeRegistry(app, $"127.0.0.1:{port}", isPrivate, refusing);
        app.Run(registry.HandleAsync);
        await app.StartAsync();
        return registry;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? "/";
        Interlocked.Increment(ref _requests);
        context.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        if (_refusing)
        {
            await ErrorAsync(context, HttpStatusCode.InternalServerError, "UNKNOWN", "the registry is broken");
            return;
        }
        if (_private)
        {
            var auth = context.Request.Headers.Authorization.ToString();
            if (!auth.StartsWith("Basic ", StringComparison.Ordinal))
            {
                context.Response.Headers.WWWAuthenticate = "Basic realm=\"shoal-test\"";
                await ErrorAsync(context, HttpStatusCode.Unauthorized, "UNAUTHORIZED", "authentication required");
                return;
            }
            AuthenticatedUsers.Enqueue(System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(auth["Basic ".Length..])).Split(':')[0]);
        }
        if (path is "/v2/" or "/v2")
        {
            context.Response.StatusCode = 200;
            await context.Response.WriteAsync("{}");
            return;
        }
        var manifests = path.IndexOf("/manifests/", StringComparison.Ordinal);
        var repository = manifests > 4 ? path[4..manifests] : "";
        if (repository.EndsWith("/web", StringComparison.Ordinal) || repository == "web")
        {
            await ErrorAsync(context, HttpStatusCode.NotFound, "MANIFEST_UNKNOWN", "manifest unknown");
            return;
        }
        await ErrorAsync(context, HttpStatusCode.NotFound, "NAME_UNKNOWN", "repository name not known to registry");
    }

    private static async Task ErrorAsync(HttpContext context, HttpStatusCode status, string code, string message)
    {
        context.Response.StatusCode = (int)status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync($$"""{"errors":[{"code":"{{code}}","message":"{{message}}"}]}""");
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
