using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal tokens</c>: provisioning tokens that let new nodes join.</summary>
public sealed class TokensCommand : Command
{
    public TokensCommand(CliContext context)
        : base("tokens", "Manage provisioning tokens (how new nodes join)")
    {
        Subcommands.Add(new TokensCreateCommand(context));
        Subcommands.Add(new TokensListCommand(context));
        Subcommands.Add(new IdActionCommand(context, "revoke", "Revoke a provisioning token", "id", "The token's id (tok-…), from `shoal tokens list`",
            static (client, id, ct) => client.RevokeTokenAsync(id, ct), static id => $"revoked token {id}: no more nodes can join with it"));
    }
}

/// <summary><c>shoal tokens create</c>: creates a provisioning token and shows it once.</summary>
public sealed class TokensCreateCommand : ApiCommand
{
    private static readonly Option<int?> s_usesOption =
        CommonOptions.CreateIntOption("--uses", "How many nodes may register with the token (default 1)", 1);

    private static readonly Option<TimeSpan?> s_ttlOption =
        CommonOptions.CreateDurationOption("--ttl", "How long the token stays valid, default 1h, at most 30d", TimeSpan.FromSeconds(1), TimeSpan.FromDays(30));

    private static readonly Option<string?> s_descriptionOption = new("--description")
    {
        Description = "Note to remember what the token is for",
    };

    private static readonly Option<string?> s_approveOption = CreateApproveOption();

    private static readonly Option<int?> s_maxGpusOption =
        CommonOptions.CreateIntOption("--max-gpus", "The most GPUs a node may report (default no cap); a node reporting more is refused", 1, 64);

    private static readonly Option<string[]> s_labelOption = new("--label")
    {
        Description = "Label given to the nodes that join with the token, such as 'trusted' (repeatable); clusters with secrets go only to 'trusted' nodes",
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<bool> s_directOption = new("--direct")
    {
        Description = "Let edges connect to the nodes' own address (agent --direct), within the server's --node-networks; by default nodes are reached over their tunnels only",
    };

    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public TokensCreateCommand(CliContext context)
        : base("create", "Create a provisioning token for new nodes (shown once)", context, s_outputOption)
    {
        Options.Add(s_usesOption);
        Options.Add(s_ttlOption);
        Options.Add(s_descriptionOption);
        Options.Add(s_approveOption);
        Options.Add(s_maxGpusOption);
        Options.Add(s_labelOption);
        Options.Add(s_directOption);
    }

    private static Option<string?> CreateApproveOption()
    {
        var option = new Option<string?>("--approve")
        {
            Description = "auto (default): nodes work as soon as they join; manual: they wait as pending until `shoal nodes approve NODE`",
        };
        option.AcceptOnlyFromAmong(TokenApproval.Auto, TokenApproval.Manual);
        return option;
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var ttl = result.GetValue(s_ttlOption);
        var token = await client.CreateTokenAsync(
            new CreateTokenRequest
            {
                Description = result.GetValue(s_descriptionOption),
                TtlSeconds = ttl is { } t ? (int)Math.Ceiling(t.TotalSeconds) : null,
                Uses = result.GetValue(s_usesOption),
                Approve = result.GetValue(s_approveOption),
                MaxGpus = result.GetValue(s_maxGpusOption),
                Labels = result.GetValue(s_labelOption) is { Length: > 0 } labels ? labels : null,
                Direct = result.GetValue(s_directOption) ? true : null,
            },
            ct);

        if (IsJson)
        {
            Interaction.WriteJson(token, ShoalJsonContext.Default.TokenCreatedDto);
            return ExitCodes.Success;
        }

        Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
            $"created provisioning token {token.Id} ({token.Uses} use(s), expires {token.ExpiresAt.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC)"));
        var policy = new List<string> { token.Approve == TokenApproval.Manual ? "nodes wait for `shoal nodes approve`" : "nodes approved on joining" };
        if (token.MaxGpus is { } max) policy.Add(string.Create(CultureInfo.InvariantCulture, $"at most {max} GPU(s) per node"));
        if (token.Labels.Length > 0) policy.Add("labels " + string.Join(",", token.Labels));
        policy.Add(token.Direct ? "direct mode allowed" : "tunnels only");
        Interaction.DisplayMessage("policy: " + string.Join("; ", policy));
        Interaction.DisplayMessage("");
        Interaction.DisplayMessage("    " + token.Token);
        Interaction.DisplayMessage("");
        // In the environment rather than argv: every local user can read a process's argv.
        Interaction.DisplayHint("it is shown only this once. On the GPU machine, run (or put the token in a file for --token-file):");
        Interaction.DisplayMessage($"    SHOAL_TOKEN={token.Token} shoal agent --server {client.Address.ToString().TrimEnd('/')}");
        return ExitCodes.Success;
    }
}

/// <summary><c>shoal tokens list</c>: provisioning tokens (never the tokens themselves).</summary>
public sealed class TokensListCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_outputOption = CommonOptions.CreateOutputOption();

    public TokensListCommand(CliContext context)
        : base("list", "List provisioning tokens", context, s_outputOption)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var tokens = await client.ListTokensAsync(ct);
        if (IsJson) Interaction.WriteJson(tokens, ShoalJsonContext.Default.TokenDtoArray);
        else if (tokens.Length == 0) Interaction.DisplayMessage("no tokens");
        else Interaction.Write(Views.Tokens(tokens, Context.TimeProvider.GetUtcNow()));
        return ExitCodes.Success;
    }
}
