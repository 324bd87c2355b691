using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal events NAME</c>: what happened to a cluster, its replicas and their nodes, oldest first.</summary>
public sealed class EventsCommand : ApiCommand
{
    private const int MaxLimit = 1000;

    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Option<int?> s_limitOption = new("--limit", "-n") { Description = "Show the last N events (default 100, at most 1000)" };
    private static readonly Option<string?> s_replicaOption = new("--replica") { Description = "Only events of this replica" };
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public EventsCommand(CliContext context)
        : base("events", "Show a cluster's events: scheduled, started, ready, unhealthy, restarted, node lost, replaced…", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
        Options.Add(s_limitOption);
        Options.Add(s_replicaOption);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var limit = result.GetValue(s_limitOption);
        if (limit is < 1 or > MaxLimit)
        {
            Interaction.DisplayError($"--limit must be between 1 and {MaxLimit}");
            return ExitCodes.InvalidInput;
        }
        var events = await client.ListEventsAsync(result.GetValue(s_nameArgument)!, limit, ct);
        if (result.GetValue(s_replicaOption) is { } replica)
        {
            events = events.Where(e => e.Replica == replica).ToArray();
        }
        if (IsJson)
        {
            Interaction.WriteJson(events, ShoalJsonContext.Default.ClusterEventDtoArray);
        }
        else if (events.Length == 0)
        {
            Interaction.DisplayMessage("no events");
        }
        else
        {
            Interaction.Write(Views.Events(events));
        }

        return ExitCodes.Success;
    }
}
