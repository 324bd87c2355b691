using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal nodes</c>: lists the machines running the agent.</summary>
public sealed class NodesCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public NodesCommand(CliContext context)
        : base("nodes", "List nodes (machines running the agent) and their GPUs", context, s_outputOption)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var nodes = await client.ListNodesAsync(ct);
        if (IsJson)
        {
            Interaction.WriteJson(nodes, ShoalJsonContext.Default.NodeDtoArray);
        }
        else if (nodes.Length == 0)
        {
            Interaction.DisplayMessage("no nodes");
            Interaction.DisplayHint("add a GPU machine: `shoal tokens create`, then run the printed `shoal agent` command on it");
        }
        else
        {
            Interaction.Write(Views.Nodes(nodes.OrderBy(n => n.Name, StringComparer.Ordinal), Context.TimeProvider.GetUtcNow()));
        }

        return ExitCodes.Success;
    }
}
