using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>
/// <c>shoal autoscale NAME [--min N] [--max M] [--target-waiting W] … | --off</c>: shows a cluster's
/// autoscaling (settings, the current decision and why), or changes it.
/// </summary>
public sealed class AutoscaleCommand : ApiCommand
{
    private static readonly Argument<string> s_nameArgument = new("name") { Description = "Cluster name" };
    private static readonly Option<bool> s_offOption = new("--off") { Description = "Turn autoscaling off: the replica count stays where it is (set it with `shoal scale`)" };
    private static readonly AutoscaleOptions s_autoscale = new();
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public AutoscaleCommand(CliContext context)
        : base("autoscale", "Show or set a cluster's autoscaling: bounds, targets, scale-down window, scale to zero", context, s_outputOption)
    {
        Arguments.Add(s_nameArgument);
        s_autoscale.AddTo(this);
        Options.Add(s_offOption);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var name = result.GetValue(s_nameArgument)!;
        var settings = s_autoscale.Read(result);
        var maxHeld = result.GetValue(s_autoscale.MaxHeld);
        var off = result.GetValue(s_offOption);
        if (off && settings is not null)
        {
            Interaction.DisplayError("--off cannot be combined with other autoscaling options");
            return ExitCodes.InvalidInput;
        }

        ClusterDto cluster;
        if (off || settings is not null || maxHeld is not null)
        {
            cluster = await client.UpdateClusterAsync(name, new UpdateClusterRequest
            {
                Autoscale = off ? new AutoscaleRequest { Off = true } : settings,
                MaxHeld = maxHeld,
            }, ct);
        }
        else
        {
            cluster = await client.GetClusterAsync(name, ct);
        }

        if (IsJson)
        {
            Interaction.WriteJson(cluster, ShoalJsonContext.Default.ClusterDto);
            return ExitCodes.Success;
        }
        if (cluster.Autoscale is not { } autoscale)
        {
            Interaction.DisplayMessage($"{cluster.Name}: autoscaling off, {cluster.Replicas} replica(s) fixed; hold queue up to {cluster.MaxHeld} request(s)");
            Interaction.DisplayHint($"turn it on with `shoal autoscale {cluster.Name} --max N` (and --min, --target-waiting, …)");
            return ExitCodes.Success;
        }
        Interaction.DisplayMessage($"{cluster.Name}: autoscaling {Views.AutoscaleSettings(autoscale.Settings)}; hold queue up to {cluster.MaxHeld} request(s)");
        Interaction.DisplayMessage($"replicas: {cluster.Replicas} ({cluster.ReadyReplicas} ready); decision: {Views.AutoscaleDecision(autoscale)}");
        if (autoscale.LastChange is { } change) Interaction.DisplayMessage($"last change: {change}");
        return ExitCodes.Success;
    }
}
