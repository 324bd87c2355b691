using System.Collections;
using System.CommandLine;
using Shoal.Sim;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal sim</c>: the vLLM-compatible simulated model server; <c>shoal sim fleet</c>: many simulated agents.</summary>
public sealed class SimCommand : Command
{
    private static readonly Option<int?> s_port = CommonOptions.CreateIntOption("--port", "Port to listen on (default $PORT, else 8000)", 0, 65535);
    private static readonly Option<string?> s_host = new("--host") { Description = "Address to listen on (default 127.0.0.1)" };
    private static readonly Option<string?> s_model = new("--model") { Description = "Model name to serve (default shoal-sim)" };
    private static readonly Option<string?> s_gpu = new("--gpu") { Description = "GPU type, which sets the speed (default $SHOAL_GPU_TYPE, else rtx-4090)" };
    private static readonly Option<TimeSpan?> s_startupDelay = CommonOptions.CreateDurationOption("--startup-delay", "Simulated model load time before /health is 200", TimeSpan.Zero, TimeSpan.FromHours(1));
    private static readonly Option<int?> s_slots = CommonOptions.CreateIntOption("--batch-slots", "Requests decoded at once (default 8)", 1, 4096);
    private static readonly Option<int?> s_seed = CommonOptions.CreateIntOption("--seed", "Seed for text and failures (default 42)", int.MinValue);

    private readonly CliContext _context;

    public SimCommand(CliContext context)
        : base("sim", "Run the simulated, vLLM-compatible model server (the demo and test workload)")
    {
        _context = context;
        Options.Add(s_port);
        Options.Add(s_host);
        Options.Add(s_model);
        Options.Add(s_gpu);
        Options.Add(s_startupDelay);
        Options.Add(s_slots);
        Options.Add(s_seed);
        Subcommands.Add(new SimFleetCommand(context));
        SetAction(ExecuteAsync);
    }

    private async Task<int> ExecuteAsync(ParseResult result, CancellationToken ct)
    {
        SimOptions options;
        try
        {
            var env = Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
                .ToDictionary(e => (string)e.Key, e => (string?)e.Value, StringComparer.Ordinal);
            options = SimOptions.FromEnvironment(env);
        }
        catch (FormatException e)
        {
            _context.Interaction.DisplayError(e.Message);
            return ExitCodes.InvalidInput;
        }
        if (result.GetValue(s_port) is { } port) options.Port = port;
        if (result.GetValue(s_host) is { } host) options.Host = host;
        if (result.GetValue(s_model) is { } model) options.Model = model;
        if (result.GetValue(s_gpu) is { } gpu) options.GpuType = gpu;
        if (result.GetValue(s_startupDelay) is { } delay) options.StartupDelay = delay;
        if (result.GetValue(s_slots) is { } slots) options.BatchSlots = slots;
        if (result.GetValue(s_seed) is { } seed) options.Seed = seed;
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            _context.Interaction.DisplayError("invalid simulator options", errors);
            return ExitCodes.InvalidInput;
        }
        try
        {
            await SimServer.RunAsync(options, ct);
        }
        catch (IOException e)
        {
            _context.Interaction.DisplayError($"the simulator could not listen on {options.Host}:{options.Port}: {e.Message}");
            return ExitCodes.Failure;
        }
        return ExitCodes.Success;
    }
}
