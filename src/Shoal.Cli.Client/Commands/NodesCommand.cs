using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal nodes</c>: lists the machines running the agent; <c>cordon</c>, <c>uncordon</c>, <c>drain</c> and <c>approve</c> one.</summary>
public sealed class NodesCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public NodesCommand(CliContext context)
        : base("nodes", "List nodes (machines running the agent) and their GPUs; cordon, uncordon, drain or approve one", context, s_outputOption)
    {
        Subcommands.Add(new NodeSchedulingCommand(context, "cordon", "Stop placing new replicas on a node; the ones it runs stay"));
        Subcommands.Add(new NodeSchedulingCommand(context, "uncordon", "Let a cordoned or drained node take new replicas again"));
        Subcommands.Add(new NodeSchedulingCommand(context, "drain",
            "Cordon a node and move its replicas elsewhere without failing a request: a replacement becomes ready first, then the old one drains"));
        Subcommands.Add(new NodeSchedulingCommand(context, "approve",
            "Approve a node that waits for approval (its token was created with --approve manual): it gets work from now on"));
        Subcommands.Add(new IdActionCommand(context, "rm", "Remove a node that is not connected (its agent's identity stops working; its replicas are placed elsewhere)",
            "node", "Node id, or name when unique", static (client, id, ct) => client.RemoveNodeAsync(id, ct), static id => $"removed node {id}"));
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var nodes = await client.ListNodesAsync(ct);
        if (IsJson)
        {
            Interaction.WriteJson(nodes, ShoalJsonContext.Default.NodeDtoArray);
        }
        else if (nodes.Length == 0)
        {
            Interaction.DisplayMessage("no nodes");
            Interaction.DisplayHint("add a GPU machine: `shoal tokens create`, then run the printed `shoal agent` command on it");
        }
        else
        {
            Interaction.Write(Views.Nodes(nodes.OrderBy(n => n.Name, StringComparer.Ordinal), Context.TimeProvider.GetUtcNow()));
        }

        return ExitCodes.Success;
    }
}

/// <summary><c>shoal nodes cordon|uncordon|drain|approve NODE</c>; <c>drain --wait</c> follows it until the node runs nothing.</summary>
public sealed class NodeSchedulingCommand : ApiCommand
{
    private static readonly TimeSpan s_defaultTimeout = TimeSpan.FromMinutes(10);

    private readonly Argument<string> _nodeArgument = new("node") { Description = "Node id or name" };
    private readonly Option<bool>? _waitOption;
    private readonly Option<TimeSpan?>? _timeoutOption;
    private readonly string _action;

    public NodeSchedulingCommand(CliContext context, string action, string description)
        : base(action, description, context, CommonOptions.CreateOutputOption())
    {
        _action = action;
        Arguments.Add(_nodeArgument);
        if (action == "drain")
        {
            _waitOption = new Option<bool>("--wait") { Description = "Wait until the node runs no replica" };
            _timeoutOption = CommonOptions.CreateDurationOption("--timeout", "How long --wait waits, default 10m", TimeSpan.Zero, TimeSpan.FromDays(1));
            Options.Add(_waitOption);
            Options.Add(_timeoutOption);
        }
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var id = result.GetValue(_nodeArgument)!;
        var node = await client.SetNodeSchedulingAsync(id, _action, ct);
        if (_waitOption is not null && result.GetValue(_waitOption) && node.Replicas > 0)
        {
            var timeout = (_timeoutOption is null ? null : result.GetValue(_timeoutOption)) ?? s_defaultTimeout;
            var deadline = Context.TimeProvider.GetUtcNow() + timeout;
            Interaction.DisplayMessage($"draining {node.Name}: {node.Replicas} replica(s) to move…");
            while (node.Replicas > 0)
            {
                if (Context.TimeProvider.GetUtcNow() >= deadline)
                {
                    Interaction.DisplayError(string.Create(CultureInfo.InvariantCulture,
                        $"timed out after {Formats.Duration(timeout)} draining {node.Name}: {node.Replicas} replica(s) still on it"));
                    Interaction.DisplayHint("the drain goes on (a replacement may be waiting for a free GPU); see `shoal nodes` and `shoal events CLUSTER`");
                    return ExitCodes.Timeout;
                }
                await Task.Delay(Context.PollInterval, Context.TimeProvider, ct);
                node = await client.GetNodeAsync(node.Id, ct);
            }
        }

        if (IsJson)
        {
            Interaction.WriteJson(node, ShoalJsonContext.Default.NodeDto);
            return ExitCodes.Success;
        }

        Interaction.DisplaySuccess(_action switch
        {
            "cordon" => $"cordoned {node.Name}: no new replicas go there; its {node.Replicas} replica(s) stay",
            "uncordon" => $"uncordoned {node.Name}: it takes new replicas again",
            "approve" => $"approved {node.Name}: it takes replicas from now on",
            _ => node.Replicas == 0
                ? $"drained {node.Name}: no replica left on it; it stays cordoned until `shoal nodes uncordon {node.Name}`"
                : string.Create(CultureInfo.InvariantCulture, $"draining {node.Name}: its {node.Replicas} replica(s) move to other nodes, each once a replacement is ready"),
        });
        return ExitCodes.Success;
    }
}
