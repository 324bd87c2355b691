using System.Text;

namespace Shoal.Agent.Runtimes;

/// <summary>Splits and quotes command lines the way a POSIX shell does for simple words, without running a shell.</summary>
public static class CommandLine
{
    /// <summary>
    /// Splits on whitespace; single quotes keep text literally, double quotes group words and allow
    /// <c>\"</c> and <c>\\</c>; a backslash outside quotes escapes the next character.
    /// </summary>
    /// <exception cref="FormatException">A quote is not closed.</exception>
    public static IReadOnlyList<string> Split(string commandLine)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        var inWord = false;
        for (var i = 0; i < commandLine.Length; i++)
        {
            var c = commandLine[i];
            if (char.IsWhiteSpace(c))
            {
                if (inWord)
                {
                    words.Add(current.ToString());
                    current.Clear();
                    inWord = false;
                }
                continue;
            }
            inWord = true;
            if (c == '\'')
            {
                var end = commandLine.IndexOf('\'', i + 1);
                if (end < 0)
                {
                    throw new FormatException($"unclosed ' in command line: {commandLine}");
                }
                current.Append(commandLine, i + 1, end - i - 1);
                i = end;
            }
            else if (c == '"')
            {
                i++;
                while (true)
                {
                    if (i >= commandLine.Length)
                    {
                        throw new FormatException($"unclosed \" in command line: {commandLine}");
                    }
                    var d = commandLine[i];
                    if (d == '"')
                    {
                        break;
                    }
                    if (d == '\\' && i + 1 < commandLine.Length && commandLine[i + 1] is '"' or '\\')
                    {
                        i++;
                        d = commandLine[i];
                    }
                    current.Append(d);
                    i++;
                }
            }
            else if (c == '\\' && i + 1 < commandLine.Length)
            {
                i++;
                current.Append(commandLine[i]);
            }
            else
            {
                current.Append(c);
            }
        }
        if (inWord)
        {
            words.Add(current.ToString());
        }
        return words;
    }

    /// <summary>Quotes a word for <see cref="Split"/> when it needs it.</summary>
    public static string Quote(string word)
    {
        if (word.Length > 0 && !word.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '\\' or '$'))
        {
            return word;
        }
        return "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }

    /// <summary>Replaces <c>$NAME</c> and <c>${NAME}</c> with values from <paramref name="variables"/>; unknown names stay as written.</summary>
    public static string Expand(string word, IReadOnlyDictionary<string, string> variables)
    {
        if (!word.Contains('$', StringComparison.Ordinal))
        {
            return word;
        }
        var sb = new StringBuilder(word.Length);
        for (var i = 0; i < word.Length; i++)
        {
            var c = word[i];
            if (c != '$' || i + 1 >= word.Length)
            {
                sb.Append(c);
                continue;
            }
            int nameStart, nameEnd, next;
            if (word[i + 1] == '{')
            {
                var close = word.IndexOf('}', i + 2);
                if (close < 0)
                {
                    sb.Append(c);
                    continue;
                }
                nameStart = i + 2;
                nameEnd = close;
                next = close + 1;
            }
            else
            {
                nameStart = i + 1;
                nameEnd = nameStart;
                while (nameEnd < word.Length && (char.IsAsciiLetterOrDigit(word[nameEnd]) || word[nameEnd] == '_'))
                {
                    nameEnd++;
                }
                next = nameEnd;
            }
            var name = word[nameStart..nameEnd];
            if (name.Length > 0 && variables.TryGetValue(name, out var value))
            {
                sb.Append(value);
                i = next - 1;
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}
