using System.Globalization;
using System.Text;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// The measured figures of one scenario run: printed to the test output, and appended as one JSON
/// line to <c>$SHOAL_CHAOS_FIGURES</c> when set (<c>scripts/chaos.sh</c> collects them into medians).
/// </summary>
internal static class Figures
{
    public const string FileVariable = "SHOAL_CHAOS_FIGURES";

    public static void Report(ITestOutputHelper output, string scenario, IReadOnlyList<(string Name, double Value)> figures)
    {
        var line = new StringBuilder().Append("{\"scenario\":\"").Append(scenario).Append('"');
        foreach (var (name, value) in figures)
        {
            line.Append(",\"").Append(name).Append("\":").Append(Math.Round(value, 1).ToString(CultureInfo.InvariantCulture));
        }
        line.Append('}');
        output.WriteLine("CHAOS " + line);
        if (Environment.GetEnvironmentVariable(FileVariable) is { Length: > 0 } path)
        {
            File.AppendAllText(path, line + "\n");
        }
    }
}
