using System.CommandLine;
using System.CommandLine.Invocation;

namespace Shoal.Cli.Commands;

/// <summary>The <c>shoal</c> root command: every role and client command hangs off it.</summary>
public sealed class ShoalRootCommand : RootCommand
{
    /// <summary><c>--addr</c>: the server's API address; overrides <c>SHOAL_ADDR</c> and the config file. Valid on every subcommand.</summary>
    public static readonly Option<string?> AddrOption = new("--addr")
    {
        Description = "Shoal server API address (default: $SHOAL_ADDR, then the client config file, then http://127.0.0.1:7400)",
        HelpName = "url",
        Recursive = true,
    };

    /// <summary><c>--api-key</c>: the key client commands send; overrides <c>SHOAL_API_KEY</c> and the config file.</summary>
    public static readonly Option<string?> ApiKeyOption = new("--api-key")
    {
        Description = "API key for the server (default: $SHOAL_API_KEY, then the client config file written by `shoal login`)",
        HelpName = "key",
        Recursive = true,
    };

    /// <summary>
    /// How every <c>shoal</c> command line is parsed: a word starting with <c>@</c> is taken as it is,
    /// never read as a response file (an argument such as <c>@/var/lib/shoal/agent/node.json</c> would
    /// otherwise put that file's contents on the command line, and into error messages and logs).
    /// </summary>
    public static ParserConfiguration ParserConfiguration { get; } = new() { ResponseFileTokenReplacer = null };

    private readonly CliContext _context;

    public ShoalRootCommand(CliContext context)
        : base("Shoal: an overlay network for GPU inference. One cluster = one image = one GPU type = one endpoint.")
    {
        _context = context;
        Options.Add(AddrOption);
        Options.Add(ApiKeyOption);
        foreach (var command in CreateSubcommands(context))
        {
            Subcommands.Add(command);
        }
    }

    /// <summary>Every subcommand, in the order help lists them. Add a command here, one line each.</summary>
    private static IEnumerable<Command> CreateSubcommands(CliContext context) =>
    [
        new DeployCommand(context),
        new ClustersCommand(context),
        new StatusCommand(context),
        new EventsCommand(context),
        new LogsCommand(context),
        new ScaleCommand(context),
        new UpdateCommand(context),
        new RemoveCommand(context),
        new NodesCommand(context),
        new TokensCommand(context),
        new KeysCommand(context),
        new ProjectsCommand(context),
        new LoginCommand(context),
        new GpuTypesCommand(context),
        new ServerCommand(context),
        new EdgeCommand(context),
        new AgentCommand(context),
        new DevCommand(context),
        new SimCommand(context),
    ];

    /// <summary>Parses and runs <paramref name="args"/>; a command line that does not parse ends with <see cref="ExitCodes.InvalidInput"/>.</summary>
    public async Task<int> InvokeAsync(IReadOnlyList<string> args, CancellationToken ct = default)
    {
        // Bare `shoal` shows the help rather than an error.
        var result = Parse(args.Count == 0 ? ["--help"] : args, ParserConfiguration);
        if (result.Action is ParseErrorAction)
        {
            // Everything on stderr: a script reading stdout gets nothing rather than a hint.
            var commandPath = string.Join(' ', EnumerateCommandPath(result.CommandResult.Command));
            for (var i = 0; i < result.Errors.Count; i++)
            {
                var last = i == result.Errors.Count - 1;
                _context.Interaction.DisplayError(result.Errors[i].Message, last ? [$"see `{commandPath} --help`"] : null);
            }

            return ExitCodes.InvalidInput;
        }

        return await result.InvokeAsync(new InvocationConfiguration { Output = _context.HelpOutput, ProcessTerminationTimeout = TimeSpan.FromSeconds(30) }, ct);
    }

    private static IEnumerable<string> EnumerateCommandPath(Command command)
    {
        var names = new Stack<string>();
        for (Symbol? symbol = command; symbol is not null; symbol = symbol.Parents.FirstOrDefault())
        {
            names.Push(symbol is RootCommand ? "shoal" : symbol.Name);
        }

        return names;
    }
}
