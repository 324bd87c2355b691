using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Shoal.Cli.Interaction;

/// <summary><see cref="IInteractionService"/> over two Spectre consoles, one for stdout and one for stderr.</summary>
public sealed class ConsoleInteractionService : IInteractionService
{
    private static readonly JsonWriterOptions s_jsonWriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly IAnsiConsole _stdout;
    private readonly IAnsiConsole _stderr;

    public ConsoleInteractionService(IAnsiConsole stdout, IAnsiConsole stderr)
    {
        _stdout = stdout;
        _stderr = stderr;
    }

    public OutputFormat Format { get; set; } = OutputFormat.Table;

    /// <summary>The console people read: stdout, unless stdout is reserved for JSON.</summary>
    private IAnsiConsole Human => Format == OutputFormat.Json ? _stderr : _stdout;

    /// <summary>Consoles for the real process: stdout and stderr, each detected separately.</summary>
    public static ConsoleInteractionService CreateDefault() =>
        new(CreateConsole(Console.Out, Console.IsOutputRedirected), CreateConsole(Console.Error, Console.IsErrorRedirected));

    private static IAnsiConsole CreateConsole(TextWriter writer, bool redirected)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        if (redirected)
        {
            // Spectre assumes 80 columns without a terminal; don't break lines that scripts grep.
            console.Profile.Width = 1000;
        }

        return console;
    }

    public void Write(IRenderable renderable)
    {
        if (Format == OutputFormat.Json)
        {
            return;
        }

        _stdout.Write(renderable);
    }

    public void WriteRaw(string text)
    {
        var writer = _stdout.Profile.Out.Writer;
        writer.Write(text);
        writer.Flush();
    }

    public void WriteJson<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, s_jsonWriterOptions))
        {
            JsonSerializer.Serialize(writer, value, typeInfo);
        }

        // Straight to the writer: Spectre would wrap long lines and interpret brackets.
        var output = _stdout.Profile.Out.Writer;
        output.Write(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
        output.Write('\n');
        output.Flush();
    }

    public void DisplayMessage(string text) => Human.WriteLine(text);

    public void DisplaySuccess(string text) => Human.MarkupLineInterpolated($"[green]✓[/] {text}");

    public void DisplayHint(string text) => Human.MarkupLineInterpolated($"[grey]{text}[/]");

    public void DisplayError(string text, IEnumerable<string>? details = null)
    {
        _stderr.MarkupLineInterpolated($"[red]error:[/] {text}");
        foreach (var detail in details ?? [])
        {
            _stderr.WriteLine("  " + detail);
        }
    }

    public async Task<T> ShowProgressAsync<T>(Func<IProgressReporter, Task<T>> work)
    {
        var console = Human;
        if (console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi)
        {
            return await console.Live(new Markup("[grey]waiting…[/]"))
                .StartAsync(ctx => work(new LiveReporter(ctx)));
        }

        return await work(new LineReporter(console));
    }

    private sealed class LiveReporter(LiveDisplayContext context) : IProgressReporter
    {
        public void Report(IRenderable view, string summary)
        {
            context.UpdateTarget(view);
            context.Refresh();
        }
    }

    private sealed class LineReporter(IAnsiConsole console) : IProgressReporter
    {
        private string? _last;

        public void Report(IRenderable view, string summary)
        {
            if (summary == _last)
            {
                return;
            }

            _last = summary;
            console.WriteLine(summary);
        }
    }
}
