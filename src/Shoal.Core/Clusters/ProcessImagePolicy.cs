using System.Collections.Frozen;
using System.Text.RegularExpressions;

namespace Shoal.Core.Clusters;

/// <summary>
/// What a cluster may hand to an image that the process runtime runs: a local command on the node,
/// outside any container, as the agent's user. Env names come from an allow list (upper-case names,
/// none that changes how a loader, an interpreter or a shell behaves, unless the node operator
/// allowed it) and no arg may name a response file. The control plane checks this at deploy time
/// and the agent again before it starts a replica.
/// </summary>
public sealed partial class ProcessImagePolicy
{
    /// <summary>The process runtime's built-in image: <c>shoal sim</c>.</summary>
    public const string SimImage = "shoal/sim";

    private static readonly FrozenSet<string> s_deniedNames = FrozenSet.ToFrozenSet(
        ["NODE_OPTIONS", "BROWSER", "PATH", "HOME", "SHELL", "IFS"], StringComparer.Ordinal);

    private static readonly string[] s_deniedPrefixes = ["LD_", "PYTHON", "PERL", "DOTNET_", "CORECLR_"];

    private readonly IReadOnlyDictionary<string, IReadOnlySet<string>> _allowedEnvByImage;

    /// <param name="allowedEnvByImage">
    /// Every image a node's process runtime runs, with the env names its operator allowed beyond the
    /// rule (the union over the nodes that run it). <see cref="SimImage"/> is always a process image.
    /// </param>
    public ProcessImagePolicy(IReadOnlyDictionary<string, IReadOnlySet<string>> allowedEnvByImage)
    {
        _allowedEnvByImage = allowedEnvByImage;
    }

    /// <summary>Knows only the built-in <see cref="SimImage"/>, with nothing allowed beyond the rule.</summary>
    public static ProcessImagePolicy BuiltIn { get; } = new(new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal));

    [GeneratedRegex("^[A-Z_][A-Z0-9_]*$")]
    private static partial Regex UpperCaseName();

    /// <summary>Whether the process runtime of some node runs <paramref name="image"/>.</summary>
    public bool IsProcessImage(string? image) => image is not null && (image == SimImage || _allowedEnvByImage.ContainsKey(image));

    /// <summary>Why the env name <paramref name="name"/> may not reach a process image, or null when it may.</summary>
    /// <param name="allowed">Names the node operator allowed (<c>shoal agent --allow-env</c>).</param>
    public static string? EnvNameProblem(string name, IReadOnlySet<string>? allowed)
    {
        if (allowed?.Contains(name) == true)
        {
            return null;
        }
        if (!UpperCaseName().IsMatch(name))
        {
            return "only upper-case letters, digits and '_' are allowed";
        }
        if (s_deniedNames.Contains(name) || s_deniedPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
        {
            return "it changes how the loader, an interpreter or a shell behaves (LD_*, PYTHON*, PERL*, NODE_OPTIONS, DOTNET_*, CORECLR_*, BROWSER, PATH, HOME, SHELL, IFS)";
        }
        return null;
    }

    /// <summary>Why <paramref name="arg"/> may not be passed to a process image, or null when it may.</summary>
    public static string? ArgProblem(string arg) =>
        arg.StartsWith('@') ? "an arg starting with '@' would name a response file" : null;

    /// <summary>
    /// Every problem with giving the env names <paramref name="envNames"/> and <paramref name="args"/> to
    /// <paramref name="image"/>; empty when it is not a process image or all is well.
    /// </summary>
    public IReadOnlyList<string> Check(string? image, IEnumerable<string> envNames, IEnumerable<string> args)
    {
        if (!IsProcessImage(image))
        {
            return [];
        }
        var allowed = _allowedEnvByImage.GetValueOrDefault(image!);
        var errors = new List<string>();
        foreach (var name in envNames)
        {
            if (EnvNameProblem(name, allowed) is { } problem)
            {
                errors.Add($"env '{name}' is not allowed for image {image}, which runs as a local process on the node: {problem} (a node operator can allow it with `shoal agent --allow-env {name}`)");
            }
        }
        if (image == SimImage && args.Any())
        {
            errors.Add("image shoal/sim takes no args: set the simulator's settings with SIM_* env variables (for example SIM_DECODE_MS=2)");
            return errors;
        }
        foreach (var arg in args)
        {
            if (arg is not null && ArgProblem(arg) is { } problem)
            {
                errors.Add($"arg '{(arg.Length <= 80 ? arg : arg[..80] + "…")}' is not allowed for image {image}, which runs as a local process on the node: {problem}");
            }
        }
        return errors;
    }
}
