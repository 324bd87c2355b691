using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal gpu-types</c>: the GPU catalogue and how many of each are free.</summary>
public sealed class GpuTypesCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public GpuTypesCommand(CliContext context)
        : base("gpu-types", "List GPU types and how many are free", context, s_outputOption)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var types = await client.ListGpuTypesAsync(ct);
        if (IsJson)
        {
            Interaction.WriteJson(types, ShoalJsonContext.Default.GpuTypeDtoArray);
        }
        else
        {
            Interaction.Write(Views.GpuTypes(types));
        }

        return ExitCodes.Success;
    }
}
