namespace Shoal.Cli.Parsing;

/// <summary>Parses <c>--env KEY=VALUE</c> pairs into the cluster's environment.</summary>
public static class EnvParser
{
    /// <summary>Splits each item at its first '='; the value may be empty or contain '='. Returns false with a message on the first bad item.</summary>
    public static bool TryParse(IEnumerable<string> items, out Dictionary<string, string> env, out string? error)
    {
        ArgumentNullException.ThrowIfNull(items);
        env = new Dictionary<string, string>(StringComparer.Ordinal);
        error = null;
        foreach (var item in items)
        {
            var eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                error = $"--env '{item}' is not KEY=VALUE (for example --env MODEL=llama-3-8b)";
                return false;
            }

            var key = item[..eq];
            if (!IsValidName(key))
            {
                error = key.Length == 0
                    ? $"--env '{item}' has no name before '='"
                    : $"--env name '{key}' is not valid: use letters, digits and '_', not starting with a digit";
                return false;
            }

            if (!env.TryAdd(key, item[(eq + 1)..]))
            {
                error = $"--env '{key}' is given more than once";
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Parses <c>--secret-env</c> items: <c>NAME=VALUE</c>, or <c>NAME</c> alone to take the value
    /// of <c>$NAME</c> from <paramref name="environment"/> (so it stays out of the command line and
    /// shell history). A message never quotes a value. Returns false with a message on the first bad item.
    /// </summary>
    public static bool TryParseSecret(IEnumerable<string> items, Func<string, string?> environment, out Dictionary<string, string> env, out string? error)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(environment);
        env = new Dictionary<string, string>(StringComparer.Ordinal);
        error = null;
        foreach (var item in items)
        {
            var eq = item.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? item : item[..eq];
            if (!IsValidName(key))
            {
                error = key.Length == 0
                    ? "--secret-env has no name before '='"
                    : $"--secret-env name '{key}' is not valid: use letters, digits and '_', not starting with a digit";
                return false;
            }

            var value = eq < 0 ? environment(key) : item[(eq + 1)..];
            if (value is null)
            {
                error = $"--secret-env {key}: ${key} is not set (give NAME=VALUE, or export NAME and give NAME alone)";
                return false;
            }

            if (!env.TryAdd(key, value))
            {
                error = $"--secret-env '{key}' is given more than once";
                return false;
            }
        }

        return true;
    }

    /// <summary>POSIX-style environment names: <c>[A-Za-z_][A-Za-z0-9_]*</c>.</summary>
    public static bool IsValidName(string name) =>
        name.Length > 0
        && (char.IsAsciiLetter(name[0]) || name[0] == '_')
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}
