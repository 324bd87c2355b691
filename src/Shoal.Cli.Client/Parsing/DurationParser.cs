using System.Globalization;

namespace Shoal.Cli.Parsing;

/// <summary>Parses durations written like <c>500ms</c>, <c>30s</c>, <c>5m</c>, <c>1h</c>, <c>1h30m</c>, <c>2d</c>.</summary>
public static class DurationParser
{
    public const string Help = "a duration such as 500ms, 30s, 5m, 1h or 1h30m";

    public static bool TryParse(string? text, out TimeSpan value, out string? error)
    {
        value = TimeSpan.Zero;
        error = null;
        var s = text?.Trim() ?? "";
        if (s.Length == 0)
        {
            error = $"expected {Help}, got an empty value";
            return false;
        }

        var total = TimeSpan.Zero;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
            {
                i++;
            }

            if (i == start
                || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                error = $"'{text}' is not {Help}";
                return false;
            }

            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
            {
                i++;
            }

            var unit = s[unitStart..i];
            TimeSpan part;
            try
            {
                part = unit.ToLowerInvariant() switch
                {
                    "ms" => TimeSpan.FromMilliseconds(number),
                    "s" => TimeSpan.FromSeconds(number),
                    "m" => TimeSpan.FromMinutes(number),
                    "h" => TimeSpan.FromHours(number),
                    "d" => TimeSpan.FromDays(number),
                    "" => throw new FormatException($"'{text}' has no unit; write for example {number.ToString(CultureInfo.InvariantCulture)}s"),
                    _ => throw new FormatException($"'{text}' has an unknown unit '{unit}'; use ms, s, m, h or d"),
                };
            }
            catch (FormatException ex)
            {
                error = ex.Message;
                return false;
            }
            catch (OverflowException)
            {
                error = $"'{text}' is too long a duration";
                return false;
            }

            total += part;
        }

        value = total;
        return true;
    }

    public static TimeSpan Parse(string text) =>
        TryParse(text, out var value, out var error) ? value : throw new FormatException(error);
}
