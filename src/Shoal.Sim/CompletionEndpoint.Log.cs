namespace Shoal.Sim;

internal sealed partial class CompletionEndpoint
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "injected crash after {Requests} requests (SIM_CRASH_AFTER): exiting with code 1")]
    private static partial void LogCrash(ILogger logger, int requests);
}
