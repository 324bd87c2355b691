namespace Shoal.Hosting;

/// <summary>The one console logging setup of every Shoal role (server, edge, agent, dev).</summary>
public static class ShoalLogging
{
    /// <summary>Timestamp at the start of each console line.</summary>
    public const string TimestampFormat = "HH:mm:ss.fff ";

    /// <summary>
    /// Replaces the builder's providers with one-line console output (<see cref="TimestampFormat"/>),
    /// or with what <paramref name="replaceConsole"/> adds (tests capture logs that way): entries at
    /// <paramref name="minimum"/> and above, framework categories (<c>Microsoft</c>, <c>System</c>)
    /// from <see cref="LogLevel.Warning"/>.
    /// </summary>
    public static ILoggingBuilder AddShoalLogging(this ILoggingBuilder logging, LogLevel minimum, Action<ILoggingBuilder>? replaceConsole = null)
    {
        ArgumentNullException.ThrowIfNull(logging);
        logging.ClearProviders();
        logging.SetMinimumLevel(minimum);
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("System", LogLevel.Warning);
        if (replaceConsole is null)
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = TimestampFormat;
            });
        }
        else
        {
            replaceConsole(logging);
        }
        return logging;
    }
}
