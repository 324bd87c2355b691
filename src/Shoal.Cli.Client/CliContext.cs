using Shoal.Cli.Client;
using Shoal.Cli.Interaction;

namespace Shoal.Cli;

/// <summary>What the client commands need from the outside world, so tests can supply their own.</summary>
public sealed class CliContext
{
    public required IInteractionService Interaction { get; init; }

    /// <summary>Environment lookup used for <c>SHOAL_ADDR</c>, <c>SHOAL_API_KEY</c>, <c>SHOAL_CONFIG</c> and <c>XDG_CONFIG_HOME</c>.</summary>
    public Func<string, string?> GetEnvironmentVariable { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>The user's home directory for <c>~/.config/shoal/config.json</c>; the real one when null.</summary>
    public string? HomeDirectory { get; init; }

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How often <c>deploy --wait</c> asks for the cluster's status.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Makes the API client for an address and an API key (null when none was found).</summary>
    public Func<Uri, string?, ShoalClient> CreateClient { get; init; } = static (address, apiKey) => new ShoalClient(address, apiKey);

    /// <summary>Where System.CommandLine writes help and version text.</summary>
    public TextWriter HelpOutput { get; init; } = Console.Out;

    /// <summary>The context of the real process: the real console, environment and clock.</summary>
    public static CliContext CreateDefault() => new() { Interaction = ConsoleInteractionService.CreateDefault() };
}
