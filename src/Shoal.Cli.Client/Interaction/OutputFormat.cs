namespace Shoal.Cli.Interaction;

/// <summary>What a command writes to stdout: human tables, or only JSON for scripts.</summary>
public enum OutputFormat
{
    Table,
    Json,
}
