using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal status NAME</c>: a cluster and its replicas, with their cold-start latencies.</summary>
public sealed class StatusCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public StatusCommand(CliContext context)
        : base("status", "Show a cluster and its replicas: where they run, their state and cold-start times", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var status = await client.GetClusterStatusAsync(result.GetValue(s_nameArgument)!, ct);
        if (IsJson)
        {
            Interaction.WriteJson(status, ShoalJsonContext.Default.ClusterStatusDto);
        }
        else
        {
            Interaction.Write(Views.ClusterStatus(status));
        }

        return ExitCodes.Success;
    }
}
