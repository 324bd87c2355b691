using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;
using Spectre.Console;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal usage</c>: requests, tokens, cost and GPU-seconds from the usage ledger, by node, cluster, key or project.</summary>
public sealed class UsageCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();
    private static readonly Option<string> s_by = new("--by")
    {
        Description = "Group by node (operators), cluster, key or project",
        HelpName = "node|cluster|key|project",
        DefaultValueFactory = _ => UsageGroupings.Project,
    };
    private static readonly Option<string> s_since = new("--since")
    {
        Description = "Start of the period: a duration back from now (30m, 24h, 7d) or a time (ISO 8601)",
        DefaultValueFactory = _ => "24h",
    };
    private static readonly Option<string?> s_until = new("--until") { Description = "End of the period (default now): a duration back from now or a time" };
    private static readonly Option<bool> s_json = new("--json") { Description = "Print JSON (same as --output json)" };

    public UsageCommand(CliContext context)
        : base("usage", "Show usage: requests, tokens, cost and GPU-seconds by node, cluster, key or project", context, s_outputOption)
    {
        Options.Add(s_by);
        Options.Add(s_since);
        Options.Add(s_until);
        Options.Add(s_json);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        if (result.GetValue(s_json)) Interaction.Format = OutputFormat.Json;
        var by = result.GetValue(s_by)!.Trim().ToLowerInvariant();
        if (!UsageGroupings.IsKnown(by))
        {
            Interaction.DisplayError($"--by must be {UsageGroupings.Node}, {UsageGroupings.Cluster}, {UsageGroupings.Key} or {UsageGroupings.Project}");
            return ExitCodes.InvalidInput;
        }
        var report = await client.GetUsageAsync(by, result.GetValue(s_since)!, result.GetValue(s_until), ct);
        if (IsJson)
        {
            Interaction.WriteJson(report, ShoalJsonContext.Default.UsageReportDto);
            return ExitCodes.Success;
        }
        Interaction.Write(Table(report));
        return ExitCodes.Success;
    }

    /// <summary>The report as a table, with a total line.</summary>
    public static Table Table(UsageReportDto report)
    {
        var table = new Table().Border(TableBorder.Simple);
        foreach (var header in (string[])[report.By.ToUpperInvariant(), "REQUESTS", "ERRORS", "PROMPT TOKENS", "COMPLETION TOKENS", "COST (USD)", "GPU-SECONDS"])
        {
            table.AddColumn(new TableColumn(new Text(header, new Style(decoration: Decoration.Bold))));
        }
        void Row(string group, long requests, long errors, long prompt, long completion, decimal cost, double gpuSeconds) =>
            table.AddRow(
                new Text(group), Number(requests), Number(errors), Number(prompt), Number(completion),
                new Text(cost.ToString("0.######", CultureInfo.InvariantCulture)),
                new Text(gpuSeconds.ToString("0.#", CultureInfo.InvariantCulture)));
        foreach (var r in report.Rows) Row(r.Group, r.Requests, r.Errors, r.PromptTokens, r.CompletionTokens, r.CostUsd, r.GpuSeconds);
        Row("TOTAL", report.Rows.Sum(r => r.Requests), report.Rows.Sum(r => r.Errors), report.Rows.Sum(r => r.PromptTokens),
            report.Rows.Sum(r => r.CompletionTokens), report.Rows.Sum(r => r.CostUsd), report.Rows.Sum(r => r.GpuSeconds));
        table.Caption = new TableTitle(string.Create(CultureInfo.InvariantCulture,
            $"{report.Since.UtcDateTime:yyyy-MM-dd HH:mm:ss} to {report.Until.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC"));
        return table;

        static Text Number(long value) => new(value.ToString("N0", CultureInfo.InvariantCulture));
    }
}
