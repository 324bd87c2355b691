using System.CommandLine;
using Shoal.Cli.Client;

namespace Shoal.Cli.Commands;

/// <summary>
/// A command that does one thing to one object named by its id (<c>shoal keys revoke ID</c>,
/// <c>shoal tokens revoke ID</c>, <c>shoal nodes rm NODE</c>) and says what it did.
/// </summary>
public sealed class IdActionCommand : ApiCommand
{
    private readonly Argument<string> _id;
    private readonly Func<ShoalClient, string, CancellationToken, Task> _act;
    private readonly Func<string, string> _done;

    /// <param name="act">the API call for the id.</param>
    /// <param name="done">the success line for the id.</param>
    public IdActionCommand(CliContext context, string name, string description, string argument, string argumentDescription,
        Func<ShoalClient, string, CancellationToken, Task> act, Func<string, string> done)
        : base(name, description, context, null)
    {
        _id = new Argument<string>(argument) { Description = argumentDescription };
        _act = act;
        _done = done;
        Arguments.Add(_id);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var id = result.GetValue(_id)!;
        await _act(client, id, ct);
        Interaction.DisplaySuccess(_done(id));
        return ExitCodes.Success;
    }
}
