using Shoal.Agent;
using Shoal.Cli;
using Shoal.Cli.Commands;

// An agent (it shares its node's CPUs with the replicas) and a control plane server (it shares its CPUs
// with its store; at 10,000 agents spinning took about a third of the server's CPU during a deploy and
// slowed PostgreSQL beside it, docs/benchmarks.md): idle thread-pool workers sleep instead of spinning,
// read when the thread pool starts, so before anything runs (see AgentHost.PreferSleepingThreadPool). The
// fleet simulator stands in for thousands of agents: it does the same.
if (args is ["agent", ..] or ["server", ..] or ["sim", "fleet", ..]) AgentHost.PreferSleepingThreadPool();

return await ShoalCommands.ForArguments(CliContext.CreateDefault(), args).InvokeAsync(args);
