using Shoal.Cli;
using Shoal.Cli.Commands;
using Shoal.Cli.Native;

// A role runs in the full shoal: hand it the whole command line before parsing anything here, so
// its own parser, help and errors answer (and it becomes this process: same PID, same signals).
if (args.Length > 0 && RoleForwarder.IsRole(args[0])) return RoleForwarder.Exec(args);

var context = CliContext.CreateDefault();
return await ShoalRootCommand.ForArguments(context, [.. ShoalRootCommand.ClientCommands, .. RoleForwarder.Commands(args)], args).InvokeAsync(args);
