using System.CommandLine;
using Shoal.Cli.Client;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal logs NAME [--replica ID] [--follow]</c>: a cluster's output, streamed from its nodes through the server.</summary>
public sealed class LogsCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Option<string?> s_replicaOption = new("--replica") { Description = "Only this replica (default: every replica, lines prefixed with its id)" };
    private static readonly Option<bool> s_followOption = new("--follow", "-f") { Description = "Keep streaming new output" };
    private static readonly Option<int?> s_tailOption = new("--tail") { Description = "Start with the last N lines of each replica" };

    public LogsCommand(CliContext context)
        : base("logs", "Show a cluster's output (stdout and stderr of its replicas)", context, outputOption: null)
    {
        Arguments.Add(s_nameArgument);
        Options.Add(s_replicaOption);
        Options.Add(s_followOption);
        Options.Add(s_tailOption);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        if (result.GetValue(s_tailOption) is < 0)
        {
            Interaction.DisplayError("--tail cannot be negative");
            return ExitCodes.InvalidInput;
        }
        try
        {
            await client.StreamLogsAsync(
                result.GetValue(s_nameArgument)!,
                result.GetValue(s_replicaOption),
                result.GetValue(s_followOption),
                result.GetValue(s_tailOption),
                text =>
                {
                    Interaction.WriteRaw(text);
                    return Task.CompletedTask;
                },
                ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Ctrl-C ends a followed stream; that is how it is meant to end.
        }
        return ExitCodes.Success;
    }
}
