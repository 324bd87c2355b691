using Spectre.Console;

namespace Shoal.Cli.Tests.Infrastructure;

/// <summary>A Spectre console over a StringWriter: no colours, no ANSI, not interactive, wide enough for any table.</summary>
public sealed class TestConsole
{
    private readonly StringWriter _writer = new();

    public TestConsole()
    {
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(_writer),
        });
        Console.Profile.Width = 300;
    }

    public IAnsiConsole Console { get; }

    public string Output => _writer.ToString();
}
