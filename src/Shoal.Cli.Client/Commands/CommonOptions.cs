using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Shoal.Cli.Interaction;
using Shoal.Cli.Parsing;

namespace Shoal.Cli.Commands;

/// <summary>Factories for options several commands share, so each command can hold its own static instance.</summary>
public static class CommonOptions
{
    /// <summary><c>--output table|json</c>.</summary>
    public static Option<OutputFormat> CreateOutputOption() => new("--output", "-o")
    {
        Description = "Output format: table (default) or json (only JSON on stdout)",
        HelpName = "table|json",
        CustomParser = static result =>
        {
            var value = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            switch (value.ToLowerInvariant())
            {
                case "table":
                    return OutputFormat.Table;
                case "json":
                    return OutputFormat.Json;
                default:
                    result.AddError($"--output '{value}' is not supported; use table or json");
                    return OutputFormat.Table;
            }
        },
    };

    /// <summary>A duration option such as <c>--timeout 5m</c>; null when not given.</summary>
    public static Option<TimeSpan?> CreateDurationOption(string name, string description, TimeSpan minimum, TimeSpan maximum) => new(name)
    {
        Description = $"{description} ({DurationParser.Help})",
        HelpName = "duration",
        CustomParser = result => ParseDuration(result, name, minimum, maximum),
    };

    /// <summary><c>--env/-e KEY=VALUE</c>, repeatable, parsed by <see cref="EnvParser"/> with its errors as parse errors.</summary>
    public static Option<Dictionary<string, string>> CreateEnvOption(string description) => new("--env", "-e")
    {
        Description = description,
        HelpName = "KEY=VALUE",
        Arity = ArgumentArity.ZeroOrMore,
        DefaultValueFactory = static _ => [],
        CustomParser = static result =>
        {
            if (EnvParser.TryParse(result.Tokens.Select(t => t.Value), out var env, out var error))
            {
                return env;
            }

            result.AddError(error!);
            return [];
        },
    };

    /// <summary>
    /// <c>--secret-env NAME=VALUE</c> or <c>--secret-env NAME</c> (value from <c>$NAME</c>), repeatable;
    /// resolved with <see cref="EnvParser.TryParseSecret"/> when the command runs, where the
    /// environment is known.
    /// </summary>
    public static Option<string[]> CreateSecretEnvOption(string description) => new("--secret-env")
    {
        Description = description,
        HelpName = "NAME[=VALUE]",
        Arity = ArgumentArity.ZeroOrMore,
        DefaultValueFactory = static _ => [],
    };

    /// <summary>A whole-number option checked against [<paramref name="minimum"/>, <paramref name="maximum"/>]; null when not given.</summary>
    public static Option<int?> CreateIntOption(string name, string description, int minimum, int maximum = int.MaxValue) => new(name)
    {
        Description = description,
        CustomParser = result => ParseInt(result, name, minimum, maximum),
    };

    /// <summary>A whole-number argument checked against [<paramref name="minimum"/>, <paramref name="maximum"/>].</summary>
    public static Argument<int> CreateIntArgument(string name, string description, int minimum, int maximum = int.MaxValue) => new(name)
    {
        Description = description,
        CustomParser = result => ParseInt(result, name, minimum, maximum) ?? 0,
    };

    // Range checks live in the parsers, not in validators: a validator reading a value whose parsing
    // failed throws instead of reporting.
    private static TimeSpan? ParseDuration(ArgumentResult result, string name, TimeSpan minimum, TimeSpan maximum)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!DurationParser.TryParse(text, out var value, out var error))
        {
            result.AddError($"{name}: {error}");
            return null;
        }

        if (value < minimum || value > maximum)
        {
            result.AddError($"{name} must be between {Formats.Duration(minimum)} and {Formats.Duration(maximum)}, got {text}");
            return null;
        }

        return value;
    }

    private static int? ParseInt(ArgumentResult result, string name, int minimum, int maximum)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"{name} must be a whole number, got '{text}'");
            return null;
        }

        if (value < minimum || value > maximum)
        {
            result.AddError(maximum == int.MaxValue
                ? $"{name} must be at least {minimum}, got {value}"
                : $"{name} must be between {minimum} and {maximum}, got {value}");
            return null;
        }

        return value;
    }
}
