using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Cli.Commands;

/// <summary>
/// The price flags <c>shoal deploy</c> and <c>shoal update</c> share (<c>--price-input --price-output
/// --price-gpu-second</c>, US dollars); each command holds its own instance.
/// </summary>
public sealed class PriceOptions
{
    public Option<decimal?> Input { get; } = Create("--price-input", "Price in USD per 1M prompt (input) tokens, for budgets and the usage ledger's cost");
    public Option<decimal?> Output { get; } = Create("--price-output", "Price in USD per 1M completion (output) tokens");
    public Option<decimal?> GpuSecond { get; } = Create("--price-gpu-second", "Price in USD per GPU-second: a request's duration times the cluster's GPUs per replica");

    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(Input);
        command.Options.Add(Output);
        command.Options.Add(GpuSecond);
    }

    /// <summary>The price parts given on the command line; null when none is.</summary>
    public ClusterPrice? Read(ParseResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var price = new ClusterPrice
        {
            InputPerMillion = result.GetValue(Input),
            OutputPerMillion = result.GetValue(Output),
            PerGpuSecond = result.GetValue(GpuSecond),
        };
        return price == new ClusterPrice() ? null : price;
    }

    private static Option<decimal?> Create(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "usd",
        CustomParser = result => Parse(result, name),
    };

    private static decimal? Parse(ArgumentResult result, string name)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!decimal.TryParse(text, NumberStyles.Number, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"{name} must be an amount in US dollars such as 0.5, got '{text}'");
            return null;
        }
        if (value is < 0 or > ClusterSpec.MaxPriceUsd)
        {
            result.AddError($"{name} must be between 0 and {ClusterSpec.MaxPriceUsd.ToString(CultureInfo.InvariantCulture)} USD, got {text}");
            return null;
        }
        return value;
    }
}
