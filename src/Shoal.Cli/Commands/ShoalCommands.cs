namespace Shoal.Cli.Commands;

/// <summary>Every command of the full <c>shoal</c>: the client commands, then the roles this build runs.</summary>
public static class ShoalCommands
{
    /// <summary>The role commands (each runs a part of Shoal in this process), in the order help lists them.</summary>
    public static IReadOnlyList<ShoalSubcommand> Roles { get; } =
    [
        new("server", c => new ServerCommand(c)),
        new("edge", c => new EdgeCommand(c)),
        new("agent", c => new AgentCommand(c)),
        new("dev", c => new DevCommand(c)),
        new("sim", c => new SimCommand(c)),
    ];

    /// <summary>Client commands, then roles.</summary>
    public static IReadOnlyList<ShoalSubcommand> All { get; } = [.. ShoalRootCommand.ClientCommands, .. Roles];

    /// <summary>The root command for running <paramref name="args"/> (see <see cref="ShoalRootCommand.ForArguments"/>).</summary>
    public static ShoalRootCommand ForArguments(CliContext context, IReadOnlyList<string> args) => ShoalRootCommand.ForArguments(context, All, args);
}
