using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal clusters</c>: lists clusters.</summary>
public sealed class ClustersCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public ClustersCommand(CliContext context)
        : base("clusters", "List clusters", context, s_outputOption)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var clusters = await client.ListClustersAsync(ct);
        if (IsJson)
        {
            Interaction.WriteJson(clusters, ShoalJsonContext.Default.ClusterDtoArray);
        }
        else if (clusters.Length == 0)
        {
            Interaction.DisplayMessage("no clusters");
            Interaction.DisplayHint("deploy one with `shoal deploy NAME --image IMAGE --gpu TYPE`");
        }
        else
        {
            Interaction.Write(Views.Clusters(clusters.OrderBy(c => c.Name, StringComparer.Ordinal)));
        }

        return ExitCodes.Success;
    }
}
