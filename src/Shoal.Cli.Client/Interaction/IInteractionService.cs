using System.Text.Json.Serialization.Metadata;
using Spectre.Console.Rendering;

namespace Shoal.Cli.Interaction;

/// <summary>
/// All console output of the client commands. In <see cref="OutputFormat.Json"/> mode stdout carries
/// only the JSON document; messages, progress and errors go to stderr.
/// </summary>
public interface IInteractionService
{
    /// <summary>Set by a command once it has parsed <c>--output</c>.</summary>
    OutputFormat Format { get; set; }

    /// <summary>Writes a table or other human output to stdout (table mode only; ignored in JSON mode).</summary>
    void Write(IRenderable renderable);

    /// <summary>Writes <paramref name="value"/> as indented JSON to stdout, nothing else.</summary>
    void WriteJson<T>(T value, JsonTypeInfo<T> typeInfo);

    /// <summary>Text as it is (a replica's output) to stdout, unformatted and flushed at once.</summary>
    void WriteRaw(string text);

    /// <summary>A line of plain text for people: stdout in table mode, stderr in JSON mode.</summary>
    void DisplayMessage(string text);

    /// <summary>A line announcing that something was done, marked as success.</summary>
    void DisplaySuccess(string text);

    /// <summary>A line of less important text (hints), dimmed.</summary>
    void DisplayHint(string text);

    /// <summary>An error line on stderr, <c>error: text</c>, followed by indented detail lines.</summary>
    void DisplayError(string text, IEnumerable<string>? details = null);

    /// <summary>Runs <paramref name="work"/> while showing the progress it reports: a live view on a terminal, changed lines otherwise.</summary>
    Task<T> ShowProgressAsync<T>(Func<IProgressReporter, Task<T>> work);
}

/// <summary>Receives the latest view of a long-running operation.</summary>
public interface IProgressReporter
{
    /// <param name="view">the full view, shown live on an interactive terminal.</param>
    /// <param name="summary">one line, written when it changes where no live view is possible.</param>
    void Report(IRenderable view, string summary);
}
