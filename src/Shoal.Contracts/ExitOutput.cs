using System.Text;
using System.Text.RegularExpressions;

namespace Shoal.Contracts;

/// <summary>
/// The last lines a replica wrote before it exited, as its failure reason carries them:
/// <c>exited with code 3; last output: [loading weights | fatal: no CUDA device]</c>. Operators see
/// them in status and events; the edge's 503 for a failed cluster leaves them out
/// (<see cref="Strip"/>): a replica's output is for its operators, not for its callers.
/// </summary>
public static partial class ExitOutput
{
    /// <summary>Lines kept from the end of the output.</summary>
    public const int MaxLines = 3;

    /// <summary>Characters kept in all (the reason travels in every heartbeat while the replica is failed).</summary>
    public const int MaxChars = 300;

    private const string Prefix = "; last output: [";

    /// <summary><c>; last output: [a | b]</c> from the end of <paramref name="output"/>, or empty when it has no text.</summary>
    public static string Format(string? output)
    {
        if (string.IsNullOrWhiteSpace(output)) return "";
        var lines = output.Split('\n')
            .Select(Clean)
            .Where(l => l.Length > 0)
            .TakeLast(MaxLines)
            .ToList();
        if (lines.Count == 0) return "";
        var text = string.Join(" | ", lines);
        if (text.Length > MaxChars) text = "…" + text[^(MaxChars - 1)..];
        return Prefix + text + "]";
    }

    /// <summary><paramref name="reason"/> without the output <see cref="Format"/> put in it.</summary>
    public static string Strip(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        return OutputPattern().Replace(reason, "");
    }

    // No control characters (a terminal escape in a status line), no brackets (they delimit the output).
    private static string Clean(string line)
    {
        var b = new StringBuilder(line.Length);
        foreach (var c in line.Trim())
        {
            b.Append(c switch
            {
                '[' => '(',
                ']' => ')',
                _ when char.IsControl(c) => ' ',
                _ => c,
            });
        }
        return b.ToString().Trim();
    }

    [GeneratedRegex(@"; last output: \[[^\]]*\]", RegexOptions.CultureInvariant)]
    private static partial Regex OutputPattern();
}
