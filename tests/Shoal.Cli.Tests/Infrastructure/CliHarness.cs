using Microsoft.Extensions.Time.Testing;
using Shoal.Cli.Commands;
using Shoal.Cli.Interaction;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Infrastructure;

/// <summary>Runs <c>shoal</c> command lines in-process with captured stdout/stderr and a private environment.</summary>
public sealed class CliHarness : IDisposable
{
    private readonly TempDirectory _home = new("shoal-cli");

    public CliHarness(string? address = null)
    {
        if (address is not null)
        {
            Environment["SHOAL_ADDR"] = address;
        }

        // Never read the developer's real config file.
        Environment["SHOAL_CONFIG"] = _home.Combine("config.json");
    }

    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    public TestConsole Stdout { get; private set; } = new();

    public TestConsole Stderr { get; private set; } = new();

    public StringWriter HelpOutput { get; private set; } = new();

    public FakeTimeProvider? Time { get; set; }

    public string Out => Stdout.Output;

    public string Err => Stderr.Output;

    public async Task<int> RunAsync(params string[] args)
    {
        Stdout = new TestConsole();
        Stderr = new TestConsole();
        HelpOutput = new StringWriter();
        var context = new CliContext
        {
            Interaction = new ConsoleInteractionService(Stdout.Console, Stderr.Console),
            GetEnvironmentVariable = name => Environment.GetValueOrDefault(name),
            HomeDirectory = _home.Path,
            PollInterval = TimeSpan.FromMilliseconds(10),
            TimeProvider = Time ?? TimeProvider.System,
            HelpOutput = HelpOutput,
        };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await ShoalCommands.ForArguments(context, args).InvokeAsync(args, cts.Token);
    }

    public void Dispose() => _home.Dispose();
}
