using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal scale NAME N</c>: sets a cluster's replica count.</summary>
public sealed class ScaleCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Argument<int> s_replicasArgument = CommonOptions.CreateIntArgument("replicas", "New number of replicas (0 or more)", 0);
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public ScaleCommand(CliContext context)
        : base("scale", "Set the number of replicas of a cluster", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
        Arguments.Add(s_replicasArgument);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var cluster = await client.UpdateClusterAsync(
            result.GetValue(s_nameArgument)!, new UpdateClusterRequest { Replicas = result.GetValue(s_replicasArgument) }, ct);
        if (IsJson)
        {
            Interaction.WriteJson(cluster, ShoalJsonContext.Default.ClusterDto);
        }
        else
        {
            Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
                $"scaled {cluster.Name} to {cluster.Replicas} replica(s) ({cluster.ReadyReplicas} ready now, generation {cluster.Generation})"));
        }

        return ExitCodes.Success;
    }
}
