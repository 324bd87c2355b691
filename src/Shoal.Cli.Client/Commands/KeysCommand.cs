using System.CommandLine;
using System.Globalization;
using Shoal.Cli.Client;
using Shoal.Cli.Interaction;
using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary><c>shoal keys create|list|revoke</c>: API keys (management roles and endpoint keys).</summary>
public sealed class KeysCommand : Command
{
    public KeysCommand(CliContext context)
        : base("keys", "Manage API keys: management keys (operator, owner, admin, member, viewer) and endpoint keys for inference")
    {
        Subcommands.Add(new KeysCreateCommand(context));
        Subcommands.Add(new KeysListCommand(context));
        Subcommands.Add(new KeysUpdateCommand(context));
        Subcommands.Add(new IdActionCommand(context, "revoke", "Revoke an API key: it stops working at once (at every edge within a second)", "id",
            "The key's id (key-…), from `shoal keys list`", static (client, id, ct) => client.RevokeApiKeyAsync(id, ct), static id => $"revoked key {id}"));
    }
}

/// <summary><c>shoal keys create NAME --role ROLE [--project P] [--ttl 30d] [--rate-limit N] [--rpm N --tpm N --max-concurrent N --budget USD --budget-period P]</c>; the key is shown once.</summary>
public sealed class KeysCreateCommand : ApiCommand
{
    private static readonly Argument<string> s_name = new("name") { Description = "What the key is for (ci-deployer, alice…)" };

    private static readonly Option<string> s_role = new("--role")
    {
        Description = "operator | owner | admin | member | viewer | endpoint (endpoint keys call the project's endpoints, nothing else)",
        Required = true,
    };

    private static readonly Option<string?> s_project = new("--project") { Description = "The key's project (default: your key's project)" };

    private static readonly Option<TimeSpan?> s_ttl =
        CommonOptions.CreateDurationOption("--ttl", "How long the key stays valid (default: until revoked)", TimeSpan.FromSeconds(1), TimeSpan.FromDays(3650));

    private static readonly Option<int?> s_rateLimit =
        CommonOptions.CreateIntOption("--rate-limit", "Management calls per minute (default 100; operator keys unlimited)", 1, 1_000_000);

    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();
    private readonly GatewaySettingsOptions _gateway;

    public KeysCreateCommand(CliContext context)
        : base("create", "Create an API key (shown once)", context, s_output)
    {
        Arguments.Add(s_name);
        Options.Add(s_role);
        Options.Add(s_project);
        Options.Add(s_ttl);
        Options.Add(s_rateLimit);
        _gateway = new GatewaySettingsOptions(this, update: false);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var budget = _gateway.Budget(result, out var budgetError);
        if (budgetError is not null)
        {
            Interaction.DisplayError(budgetError);
            return ExitCodes.InvalidInput;
        }
        var ttl = result.GetValue(s_ttl);
        var key = await client.CreateApiKeyAsync(new CreateApiKeyRequest
        {
            Name = result.GetValue(s_name),
            Role = result.GetValue(s_role),
            Project = result.GetValue(s_project),
            TtlSeconds = ttl is { } t ? (long)Math.Ceiling(t.TotalSeconds) : null,
            RateLimitPerMinute = result.GetValue(s_rateLimit),
            Limits = _gateway.Limits(result),
            Budget = budget,
        }, ct);
        if (IsJson)
        {
            Interaction.WriteJson(key, ShoalJsonContext.Default.ApiKeyCreatedDto);
            return ExitCodes.Success;
        }
        Interaction.DisplaySuccess($"created {key.Role} key {key.Id} ({key.Name})" + (key.Project is { } p ? $" in project {p}" : ""));
        Interaction.DisplayMessage("");
        Interaction.DisplayMessage("    " + key.Key);
        Interaction.DisplayMessage("");
        Interaction.DisplayHint(key.Role == ApiKeyRoles.Endpoint
            ? "it is shown only this once. Clients send it as `Authorization: Bearer <key>` (OpenAI clients: api_key)"
            : "it is shown only this once. Use it with `shoal login --api-key <key>` or SHOAL_API_KEY");
        return ExitCodes.Success;
    }
}

/// <summary><c>shoal keys list</c>: the keys the caller may manage.</summary>
public sealed class KeysListCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();

    public KeysListCommand(CliContext context)
        : base("list", "List API keys (never the keys themselves)", context, s_output)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var keys = await client.ListApiKeysAsync(ct);
        if (IsJson) Interaction.WriteJson(keys, ShoalJsonContext.Default.ApiKeyDtoArray);
        else if (keys.Length == 0) Interaction.DisplayMessage("no keys");
        else Interaction.Write(Views.Keys(keys, Context.TimeProvider.GetUtcNow()));
        return ExitCodes.Success;
    }
}

/// <summary><c>shoal keys update ID [--rpm N] [--tpm N] [--max-concurrent N] [--budget USD [--budget-period P] | --no-budget]</c>: an endpoint key's gateway settings (0 removes a limit).</summary>
public sealed class KeysUpdateCommand : ApiCommand
{
    private static readonly Argument<string> s_id = new("id") { Description = "The key's id (key-…), from `shoal keys list`" };
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();
    private readonly GatewaySettingsOptions _gateway;

    public KeysUpdateCommand(CliContext context)
        : base("update", "Change an endpoint key's gateway limits and budget (0 removes a limit, --no-budget the budget)", context, s_output)
    {
        Arguments.Add(s_id);
        _gateway = new GatewaySettingsOptions(this, update: true);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        if (GatewayUpdate.From(_gateway, result, Interaction) is not { } request) return ExitCodes.InvalidInput;
        var key = await client.UpdateApiKeyAsync(result.GetValue(s_id)!, request, ct);
        if (IsJson) Interaction.WriteJson(key, ShoalJsonContext.Default.ApiKeyDto);
        else Interaction.DisplaySuccess($"key {key.Id} ({key.Name}): {GatewaySettingsOptions.Describe(key.Limits, key.Budget)}");
        return ExitCodes.Success;
    }
}

/// <summary>The request of <c>keys update</c> and <c>projects update</c>, from their options.</summary>
internal static class GatewayUpdate
{
    public static UpdateGatewaySettingsRequest? From(GatewaySettingsOptions options, ParseResult result, IInteractionService interaction)
    {
        var budget = options.Budget(result, out var error);
        var remove = options.RemoveBudget(result);
        var limits = options.Limits(result);
        error ??= remove && budget is not null ? "give --budget or --no-budget, not both"
            : limits is null && budget is null && !remove ? "nothing to change: give --rpm, --tpm, --max-concurrent, --budget or --no-budget" : null;
        if (error is not null)
        {
            interaction.DisplayError(error);
            return null;
        }
        return new UpdateGatewaySettingsRequest { Limits = limits, Budget = budget, RemoveBudget = remove };
    }
}

/// <summary><c>shoal projects create|list|update</c>.</summary>
public sealed class ProjectsCommand : Command
{
    public ProjectsCommand(CliContext context)
        : base("projects", "Manage projects (they own clusters and keys)")
    {
        Subcommands.Add(new ProjectsCreateCommand(context));
        Subcommands.Add(new ProjectsListCommand(context));
        Subcommands.Add(new ProjectsUpdateCommand(context));
    }
}

/// <summary><c>shoal projects update NAME [--rpm N] [--tpm N] [--max-concurrent N] [--budget USD [--budget-period P] | --no-budget]</c> (operator keys).</summary>
public sealed class ProjectsUpdateCommand : ApiCommand
{
    private static readonly Argument<string> s_name = new("name") { Description = "The project" };
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();
    private readonly GatewaySettingsOptions _gateway;

    public ProjectsUpdateCommand(CliContext context)
        : base("update", "Change a project's gateway limits and budget, for all its endpoint keys together (operator keys; 0 removes a limit)", context, s_output)
    {
        Arguments.Add(s_name);
        _gateway = new GatewaySettingsOptions(this, update: true);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        if (GatewayUpdate.From(_gateway, result, Interaction) is not { } request) return ExitCodes.InvalidInput;
        var project = await client.UpdateProjectAsync(result.GetValue(s_name)!, request, ct);
        if (IsJson) Interaction.WriteJson(project, ShoalJsonContext.Default.ProjectDto);
        else Interaction.DisplaySuccess($"project {project.Name}: {GatewaySettingsOptions.Describe(project.Limits, project.Budget)}");
        return ExitCodes.Success;
    }
}

public sealed class ProjectsCreateCommand : ApiCommand
{
    private static readonly Argument<string> s_name = new("name") { Description = "Project name (lower-case letters, digits, '-')" };
    private static readonly Option<string?> s_description = new("--description") { Description = "What the project is" };
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();
    private readonly GatewaySettingsOptions _gateway;

    public ProjectsCreateCommand(CliContext context)
        : base("create", "Create a project (operator keys)", context, s_output)
    {
        Arguments.Add(s_name);
        Options.Add(s_description);
        _gateway = new GatewaySettingsOptions(this, update: false);
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var budget = _gateway.Budget(result, out var budgetError);
        if (budgetError is not null)
        {
            Interaction.DisplayError(budgetError);
            return ExitCodes.InvalidInput;
        }
        var project = await client.CreateProjectAsync(new CreateProjectRequest
        {
            Name = result.GetValue(s_name), Description = result.GetValue(s_description), Limits = _gateway.Limits(result), Budget = budget,
        }, ct);
        if (IsJson)
        {
            Interaction.WriteJson(project, ShoalJsonContext.Default.ProjectDto);
            return ExitCodes.Success;
        }
        Interaction.DisplaySuccess($"created project {project.Name}");
        Interaction.DisplayHint($"give it an owner: shoal keys create {project.Name}-owner --role owner --project {project.Name}");
        return ExitCodes.Success;
    }
}

public sealed class ProjectsListCommand : ApiCommand
{
    private static readonly Option<OutputFormat> s_output = CommonOptions.CreateOutputOption();

    public ProjectsListCommand(CliContext context)
        : base("list", "List projects (yours, or all for operator keys)", context, s_output)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var projects = await client.ListProjectsAsync(ct);
        if (IsJson)
        {
            Interaction.WriteJson(projects, ShoalJsonContext.Default.ProjectDtoArray);
            return ExitCodes.Success;
        }
        foreach (var p in projects)
        {
            var gateway = p.Limits is null && p.Budget is null ? "" : "  [" + GatewaySettingsOptions.Describe(p.Limits, p.Budget) + "]";
            Interaction.DisplayMessage((p.Description is { } d ? $"{p.Name}  {d}" : p.Name) + gateway);
        }
        return ExitCodes.Success;
    }
}

/// <summary><c>shoal login [--addr URL] --api-key KEY</c>: checks the key and saves address and key in the client config (0600).</summary>
public sealed class LoginCommand : ApiCommand
{
    public LoginCommand(CliContext context)
        : base("login", "Check an API key against the server and save it (with the address) in the client config", context, null)
    {
    }

    protected override async Task<int> ExecuteAsync(ParseResult result, ShoalClient client, CancellationToken ct)
    {
        var key = ClientConfig.ResolveApiKey(result.GetValue(ShoalRootCommand.ApiKeyOption), Context.GetEnvironmentVariable, Context.HomeDirectory);
        if (key is null)
        {
            Interaction.DisplayError("give the key: shoal login --api-key <key> (or SHOAL_API_KEY)");
            return ExitCodes.InvalidInput;
        }
        var me = await client.WhoAmIAsync(ct);
        var path = ClientConfig.SaveWithKey(client.Address.ToString().TrimEnd('/'), key, ClientConfig.GetConfigPath(Context.GetEnvironmentVariable, Context.HomeDirectory));
        Interaction.DisplaySuccess(string.Create(CultureInfo.InvariantCulture,
            $"logged in to {client.Address.ToString().TrimEnd('/')} as {me.Name} ({me.KeyId}, role {me.Role}{(me.Project is { } p ? ", project " + p : "")}); saved in {path}"));
        return ExitCodes.Success;
    }
}
