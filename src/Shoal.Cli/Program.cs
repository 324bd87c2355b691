using Shoal.Agent;
using Shoal.Cli;
using Shoal.Cli.Commands;

// A process that is an agent and nothing else: idle thread-pool workers sleep instead of spinning,
// read when the thread pool starts, so before anything runs (see AgentHost.PreferSleepingThreadPool).
if (args is ["agent", ..]) AgentHost.PreferSleepingThreadPool();

return await ShoalCommands.ForArguments(CliContext.CreateDefault(), args).InvokeAsync(args);
