using Shoal.Cli;
using Shoal.Cli.Commands;

return await new ShoalRootCommand(CliContext.CreateDefault()).InvokeAsync(args);
