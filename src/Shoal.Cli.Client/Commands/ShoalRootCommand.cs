using System.CommandLine;
using System.CommandLine.Invocation;

namespace Shoal.Cli.Commands;

/// <summary>A subcommand of <c>shoal</c> by name, built only when a command line needs it.</summary>
public sealed record ShoalSubcommand(string Name, Func<CliContext, Command> Create);

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

    /// <param name="subcommands">The subcommands, in the order help lists them.</param>
    /// <param name="only">
    /// Build just this subcommand (when it is one) instead of all of them: a process runs one command,
    /// and building the others (the role commands' dozens of options) is start-up time a client
    /// command should not pay. Null, or any other value, builds every subcommand, so help, errors and
    /// suggestions see them all.
    /// </param>
    public ShoalRootCommand(CliContext context, IReadOnlyList<ShoalSubcommand> subcommands, string? only = null)
        : base("Shoal: an overlay network for GPU inference. One cluster = one image = one GPU type = one endpoint.")
    {
        ArgumentNullException.ThrowIfNull(subcommands);
        _context = context;
        Options.Add(AddrOption);
        Options.Add(ApiKeyOption);
        var single = only is null ? null : subcommands.FirstOrDefault(s => s.Name == only);
        foreach (var subcommand in single is { } one ? [one] : subcommands)
        {
            var command = subcommand.Create(context);
            if (command.Name != subcommand.Name) throw new InvalidOperationException($"the factory listed as '{subcommand.Name}' made '{command.Name}'");
            Subcommands.Add(command);
        }
    }

    /// <summary>
    /// A root command for running <paramref name="args"/>: with only the subcommand its first word names,
    /// or with all of them when the first word is not a subcommand (an option, a typo, <c>--help</c>).
    /// </summary>
    public static ShoalRootCommand ForArguments(CliContext context, IReadOnlyList<ShoalSubcommand> subcommands, IReadOnlyList<string> args) =>
        new(context, subcommands, args.Count > 0 ? args[0] : null);

    /// <summary>The client commands (API calls), in the order help lists them. Add a command here, one line each.</summary>
    public static IReadOnlyList<ShoalSubcommand> ClientCommands { get; } =
    [
        new("deploy", c => new DeployCommand(c)),
        new("clusters", c => new ClustersCommand(c)),
        new("status", c => new StatusCommand(c)),
        new("events", c => new EventsCommand(c)),
        new("logs", c => new LogsCommand(c)),
        new("scale", c => new ScaleCommand(c)),
        new("autoscale", c => new AutoscaleCommand(c)),
        new("update", c => new UpdateCommand(c)),
        new("rm", c => new RemoveCommand(c)),
        new("nodes", c => new NodesCommand(c)),
        new("tokens", c => new TokensCommand(c)),
        new("keys", c => new KeysCommand(c)),
        new("projects", c => new ProjectsCommand(c)),
        new("login", c => new LoginCommand(c)),
        new("gpu-types", c => new GpuTypesCommand(c)),
        new("usage", c => new UsageCommand(c)),
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
