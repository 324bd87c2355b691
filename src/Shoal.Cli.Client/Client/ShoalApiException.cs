using System.Net;
using Shoal.Contracts;

namespace Shoal.Cli.Client;

/// <summary>The server answered with a non-success status; carries the API error body's code and message.</summary>
public sealed class ShoalApiException : Exception
{
    public ShoalApiException(HttpStatusCode status, string code, string message)
        : base(message)
    {
        Status = status;
        Code = code;
    }

    public HttpStatusCode Status { get; }

    /// <summary>One of <see cref="ErrorCodes"/>, or <c>http_{status}</c> when the body was not an API error.</summary>
    public string Code { get; }

    /// <summary>The exit code a command should end with for this error.</summary>
    public int ExitCode => Code switch
    {
        ErrorCodes.NotFound => ExitCodes.NotFound,
        ErrorCodes.InvalidArgument or ErrorCodes.PayloadTooLarge => ExitCodes.InvalidInput,
        ErrorCodes.AlreadyExists => ExitCodes.Conflict,
        ErrorCodes.Unauthorized => ExitCodes.Unauthorized,
        _ => Status switch
        {
            HttpStatusCode.NotFound => ExitCodes.NotFound,
            HttpStatusCode.BadRequest or HttpStatusCode.RequestEntityTooLarge => ExitCodes.InvalidInput,
            HttpStatusCode.Conflict => ExitCodes.Conflict,
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => ExitCodes.Unauthorized,
            _ => ExitCodes.Failure,
        },
    };
}

/// <summary>No answer from the Shoal server at all: connection refused, unknown host or timed out.</summary>
public sealed class ShoalServerUnreachableException : Exception
{
    public ShoalServerUnreachableException(Uri address, Exception? innerException)
        : base($"cannot reach the Shoal server at {address.ToString().TrimEnd('/')} (set SHOAL_ADDR or run `shoal dev`)", innerException)
    {
        Address = address;
    }

    public Uri Address { get; }
}
