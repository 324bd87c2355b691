using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Cli.Commands;

/// <summary>
/// The autoscaling flags <c>shoal deploy</c>, <c>shoal update</c> and <c>shoal autoscale</c> share
/// (<c>--min --max --target-waiting --target-concurrency --scale-down-window --scale-to-zero-after
/// --max-held</c>); each command holds its own instance.
/// </summary>
public sealed class AutoscaleOptions
{
    public Option<int?> Min { get; } = CommonOptions.CreateIntOption("--min", "Autoscaling: fewest replicas (0 needs --scale-to-zero-after; default 1)", 0, ClusterSpec.MaxReplicas);
    public Option<int?> Max { get; } = CommonOptions.CreateIntOption("--max", "Autoscaling: most replicas (turns autoscaling on)", 1, ClusterSpec.MaxReplicas);
    public Option<double?> TargetWaiting { get; } = CreateTargetOption("--target-waiting",
        "Autoscaling: requests waiting per replica to aim at (vLLM's num_requests_waiting; default 2; 0: not used)");
    public Option<double?> TargetConcurrency { get; } = CreateTargetOption("--target-concurrency",
        "Autoscaling: requests in flight plus held at the edges per replica to aim at (for workloads without vLLM metrics; 0: not used)");
    public Option<TimeSpan?> ScaleDownWindow { get; } = CommonOptions.CreateDurationOption("--scale-down-window",
        "Autoscaling: scale down only to the highest recommendation over this window (default 5m)", TimeSpan.Zero, TimeSpan.FromSeconds(ClusterSpec.MaxScaleDownWindowSeconds));
    public Option<TimeSpan?> ScaleToZeroAfter { get; } = CommonOptions.CreateDurationOption("--scale-to-zero-after",
        "Autoscaling with --min 0: stop the last replica after this long without any request (0: never)", TimeSpan.Zero, TimeSpan.FromSeconds(ClusterSpec.MaxScaleToZeroAfterSeconds));
    public Option<int?> MaxHeld { get; } = CommonOptions.CreateIntOption("--max-held",
        "Most requests the edge holds while no replica is ready (default 1000); beyond: 503 with Retry-After", 0, ClusterSpec.MaxMaxHeld);

    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(Min);
        command.Options.Add(Max);
        command.Options.Add(TargetWaiting);
        command.Options.Add(TargetConcurrency);
        command.Options.Add(ScaleDownWindow);
        command.Options.Add(ScaleToZeroAfter);
        command.Options.Add(MaxHeld);
    }

    /// <summary>The autoscaling settings given on the command line; null when none of them is.</summary>
    public AutoscaleRequest? Read(ParseResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var request = new AutoscaleRequest
        {
            Min = result.GetValue(Min),
            Max = result.GetValue(Max),
            TargetWaiting = result.GetValue(TargetWaiting),
            TargetConcurrency = result.GetValue(TargetConcurrency),
            ScaleDownWindowSeconds = Seconds(result.GetValue(ScaleDownWindow)),
            ScaleToZeroAfterSeconds = Seconds(result.GetValue(ScaleToZeroAfter)),
        };
        return request == new AutoscaleRequest() ? null : request;
    }

    private static int? Seconds(TimeSpan? value) => value is { } v ? (int)Math.Ceiling(v.TotalSeconds) : null;

    private static Option<double?> CreateTargetOption(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "number",
        CustomParser = result => ParseTarget(result, name),
    };

    private static double? ParseTarget(ArgumentResult result, string name)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
        {
            result.AddError($"{name} must be a number, got '{text}'");
            return null;
        }
        if (value is < 0 or > ClusterSpec.MaxTarget)
        {
            result.AddError($"{name} must be between 0 and {ClusterSpec.MaxTarget.ToString(CultureInfo.InvariantCulture)}, got {text}");
            return null;
        }
        return value;
    }
}
