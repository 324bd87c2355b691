using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.ControlPlane;

/// <summary>Error responses in Shoal's one shape: <c>{"error":{"code","message","status"}}</c>.</summary>
public static partial class ApiResults
{
    public static IResult Error(int status, string code, string message) =>
        Results.Json(new ErrorResponse(new ErrorBody(code, message, status)), ShoalJsonContext.Default.ErrorResponse, statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, message);

    public static IResult NotFound(string message) => Error(StatusCodes.Status404NotFound, ErrorCodes.NotFound, message);

    public static IResult Conflict(string message) => Error(StatusCodes.Status409Conflict, ErrorCodes.AlreadyExists, message);

    public static IResult Forbidden(string message) => Error(StatusCodes.Status403Forbidden, ErrorCodes.Forbidden, message);

    public static Task WriteAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, new ErrorResponse(new ErrorBody(code, message, status)),
            ShoalJsonContext.Default.ErrorResponse, context.RequestAborted);
    }

    /// <summary>
    /// Turns failures that happen before a handler runs (unreadable JSON, a body too large) and
    /// unexpected exceptions into the error shape, so every failed call answers the same way.
    /// </summary>
    public static IApplicationBuilder UseShoalErrors(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        try
        {
            await next(context);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            var message = e.InnerException is JsonException je ? "request body is not valid JSON: " + je.Message : e.Message;
            var code = e.StatusCode == StatusCodes.Status413PayloadTooLarge ? ErrorCodes.PayloadTooLarge : ErrorCodes.InvalidArgument;
            await WriteAsync(context, e.StatusCode, code, message);
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            LogUnhandled(context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Shoal.Api"), context.Request.Path, e);
            await WriteAsync(context, StatusCodes.Status500InternalServerError, ErrorCodes.Internal, "internal error; see the server log");
        }
    });

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error in {Path}")]
    private static partial void LogUnhandled(ILogger logger, string path, Exception exception);
}
