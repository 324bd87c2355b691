using System.CommandLine;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;

namespace Shoal.Cli.Commands;

/// <summary>
/// Base of the commands that talk to the REST API: resolves the address, creates the client, and
/// turns the client's failures into an error line and the matching <see cref="ExitCodes"/> value.
/// </summary>
public abstract class ApiCommand : Command
{
    private readonly Option<OutputFormat>? _outputOption;

    protected ApiCommand(string name, string description, CliContext context, Option<OutputFormat>? outputOption)
        : base(name, description)
    {
        Context = context;
        _outputOption = outputOption;
        if (outputOption is not null)
        {
            Options.Add(outputOption);
        }

        SetAction(RunAsync);
    }

    protected CliContext Context { get; }

    protected IInteractionService Interaction => Context.Interaction;

    protected bool IsJson => Interaction.Format == OutputFormat.Json;

    /// <summary>The command's work once the command line parsed; returns an exit code.</summary>
    protected abstract Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct);

    private async Task<int> RunAsync(ParseResult result, CancellationToken ct)
    {
        if (_outputOption is not null)
        {
            Interaction.Format = result.GetValue(_outputOption);
        }

        try
        {
            var address = ClientConfig.ResolveAddress(
                result.GetValue(ShoalRootCommand.AddrOption), Context.GetEnvironmentVariable, Context.HomeDirectory);
            var apiKey = ClientConfig.ResolveApiKey(result.GetValue(ShoalRootCommand.ApiKeyOption), Context.GetEnvironmentVariable, Context.HomeDirectory);
            using var client = Context.CreateClient(address, apiKey);
            return await ExecuteAsync(result, client, ct);
        }
        catch (ClientConfigException ex)
        {
            Interaction.DisplayError(ex.Message);
            return ExitCodes.InvalidInput;
        }
        catch (ShoalServerUnreachableException ex)
        {
            Interaction.DisplayError(ex.Message);
            return ExitCodes.ServerUnreachable;
        }
        catch (ShoalApiException ex)
        {
            Interaction.DisplayError(ex.Message);
            return ex.ExitCode;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            Interaction.DisplayError("cancelled");
            return ExitCodes.Cancelled;
        }
    }
}
