using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal rm NAME</c>: removes a cluster and says what it was.</summary>
public sealed class RemoveCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public RemoveCommand(CliContext context)
        : base("rm", "Remove a cluster and stop its replicas", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var name = result.GetValue(s_nameArgument)!;

        // Read it first so the user learns what was removed (and a typo fails before anything changes).
        var cluster = await client.GetClusterAsync(name, ct);
        await client.DeleteClusterAsync(name, ct);
        if (IsJson)
        {
            Interaction.WriteJson(cluster, ShoalJsonContext.Default.ClusterDto);
        }
        else
        {
            Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
                $"removed cluster {cluster.Name}: {cluster.Image} on {Formats.ClusterGpu(cluster)}, {cluster.Replicas} replica(s), endpoint {cluster.Endpoint}"));
        }

        return ExitCodes.Success;
    }
}
