using System.Collections.Frozen;
using Shoal.Contracts;
using Shoal.Core.Security;
using Shoal.Store;

namespace Shoal.ControlPlane.Identity;

/// <summary>
/// API keys and projects: loaded from the store at start, kept in memory (keys by hash) so each call
/// is checked without a store read, written through to the store first on every change. On the
/// first start it creates the operator key and writes it to <c>{data-dir}/operator.key</c> (0600).
/// </summary>
public sealed partial class ApiKeyDirectory : Shoal.Core.Access.IEndpointKeySource, Shoal.Core.Gateway.IProjectGrantSource
{
    /// <summary>Where the bootstrap operator key is written, in the data dir.</summary>
    public const string OperatorKeyFileName = "operator.key";
    /// <summary>The project clusters land in when nobody names one.</summary>
    public const string DefaultProject = "default";
    /// <summary>Prefix of management keys.</summary>
    public const string ManagementKeyPrefix = "shoal_ak_";
    /// <summary>Prefix of endpoint (inference) keys.</summary>
    public const string EndpointKeyPrefix = "shoal_sk_";

    private readonly IShoalStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger<ApiKeyDirectory> _logger;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private FrozenDictionary<string, ApiKeyRecord> _byHash = FrozenDictionary<string, ApiKeyRecord>.Empty;
    private FrozenDictionary<string, ApiKeyRecord> _byId = FrozenDictionary<string, ApiKeyRecord>.Empty;
    private FrozenDictionary<string, ProjectRecord> _projects = FrozenDictionary<string, ProjectRecord>.Empty;
    private IReadOnlyDictionary<string, EndpointKeyGrant> _endpointKeys = FrozenDictionary<string, EndpointKeyGrant>.Empty;
    private IReadOnlyDictionary<string, ProjectGrant> _projectGrants = FrozenDictionary<string, ProjectGrant>.Empty;
    // What each key (by id) and project with a budget spent in its current period, from the usage ledger.
    private FrozenDictionary<string, decimal> _keySpent = FrozenDictionary<string, decimal>.Empty;
    private FrozenDictionary<string, decimal> _projectSpent = FrozenDictionary<string, decimal>.Empty;

    public ApiKeyDirectory(IShoalStore store, TimeProvider time, ILogger<ApiKeyDirectory> logger)
    {
        _store = store;
        _time = time;
        _logger = logger;
    }

    /// <summary>Raised after an endpoint key was created or revoked (edges get the new set).</summary>
    public event Action? EndpointKeysChanged;

    /// <summary>Raised after a project's gateway settings (limits, budget) changed (edges get the new set).</summary>
    public event Action? ProjectGrantsChanged;

    /// <summary>Every project with gateway limits or a budget; replaced as a whole on every change.</summary>
    public IReadOnlyDictionary<string, ProjectGrant> Projects => Volatile.Read(ref _projectGrants);

    /// <summary>Where the bootstrap operator key was written at this start; null when keys existed already.</summary>
    public string? OperatorKeyFile { get; private set; }

    /// <summary>Every endpoint key not revoked, by hash; replaced as a whole on every change.</summary>
    public IReadOnlyDictionary<string, EndpointKeyGrant> EndpointKeys => Volatile.Read(ref _endpointKeys);

    /// <summary>Loads keys and projects; on a store without keys, creates the operator key file.</summary>
    public async Task LoadAsync(string dataDir, CancellationToken ct)
    {
        var keys = await _store.ListApiKeysAsync(ct);
        var projects = (await _store.ListProjectsAsync(ct)).ToList();
        if (!projects.Any(p => p.Name == DefaultProject))
        {
            var project = new ProjectRecord { Name = DefaultProject, Description = "clusters created without a project", CreatedAt = _time.GetUtcNow() };
            try
            {
                await _store.CreateProjectAsync(project, ct);
            }
            catch (StoreConflictException)
            {
                // Another server on the same store made it first.
            }
            projects.Add(project);
        }
        Publish(keys, projects);
        if (keys.Count == 0)
        {
            var (_, key) = await CreateAsync("operator (bootstrap)", ApiKeyRoles.Operator, null, null, null, null, null, null, ct);
            OperatorKeyFile = SecretFile.Write(Path.Combine(Path.GetFullPath(dataDir), OperatorKeyFileName), key);
            LogBootstrapKey(_logger, OperatorKeyFile);
        }
    }

    /// <summary>The key whose hash matches <paramref name="presented"/> (revoked and expired ones included); null when none.</summary>
    public ApiKeyRecord? Find(string presented) =>
        string.IsNullOrEmpty(presented) ? null : Volatile.Read(ref _byHash).GetValueOrDefault(Secrets.Hash(presented));

    public ApiKeyRecord? Get(string id) => Volatile.Read(ref _byId).GetValueOrDefault(id);

    public IReadOnlyList<ApiKeyRecord> List() => [.. Volatile.Read(ref _byHash).Values.OrderBy(k => k.CreatedAt).ThenBy(k => k.Id, StringComparer.Ordinal)];

    public bool ProjectExists(string name) => Volatile.Read(ref _projects).ContainsKey(name);

    public IReadOnlyList<ProjectRecord> ListProjects() => [.. Volatile.Read(ref _projects).Values.OrderBy(p => p.Name, StringComparer.Ordinal)];

    /// <summary>Creates a key and returns it with its one clear-text copy; the caller checked the request.</summary>
    public async Task<(ApiKeyRecord Record, string Key)> CreateAsync(
        string name, string role, string? project, DateTimeOffset? expiresAt, int? rateLimit, GatewayLimits? limits, BudgetSpec? budget, string? createdBy, CancellationToken ct)
    {
        var key = Secrets.NewToken(role == ApiKeyRoles.Endpoint ? EndpointKeyPrefix : ManagementKeyPrefix);
        var record = new ApiKeyRecord
        {
            Id = "key-" + Secrets.RandomId(10),
            Hash = Secrets.Hash(key),
            Prefix = key[..13],
            Name = name,
            Role = role,
            Project = role == ApiKeyRoles.Operator ? null : project,
            RateLimitPerMinute = rateLimit,
            CreatedAt = _time.GetUtcNow(),
            ExpiresAt = expiresAt,
            CreatedBy = createdBy,
            Limits = limits is { IsEmpty: false } ? limits : null,
            Budget = budget,
        };
        await _writeGate.WaitAsync(ct);
        try
        {
            await _store.CreateApiKeyAsync(record, ct);
            Publish([.. Volatile.Read(ref _byHash).Values, record], _projects.Values);
        }
        finally
        {
            _writeGate.Release();
        }
        LogKeyCreated(_logger, record.Id, record.Name, record.Role, record.Project ?? "-", createdBy ?? "bootstrap");
        if (role == ApiKeyRoles.Endpoint) EndpointKeysChanged?.Invoke();
        return (record, key);
    }

    /// <summary>Revokes a key; the revoked record, or null when there is no such key.</summary>
    public async Task<ApiKeyRecord?> RevokeAsync(string id, string? actor, CancellationToken ct)
    {
        ApiKeyRecord? revoked;
        await _writeGate.WaitAsync(ct);
        try
        {
            var current = Get(id);
            if (current is null) return null;
            if (current.RevokedAt is not null) return current;
            var now = _time.GetUtcNow();
            if (!await _store.RevokeApiKeyAsync(id, now, ct)) return null;
            revoked = current with { RevokedAt = now };
            Publish([.. Volatile.Read(ref _byHash).Values.Where(k => k.Id != id), revoked], _projects.Values);
        }
        finally
        {
            _writeGate.Release();
        }
        LogKeyRevoked(_logger, revoked.Id, revoked.Name, actor ?? "-");
        if (revoked.Role == ApiKeyRoles.Endpoint) EndpointKeysChanged?.Invoke();
        return revoked;
    }

    /// <summary>Replaces a key's gateway settings; the updated record, or null when there is no such key.</summary>
    public async Task<ApiKeyRecord?> UpdateGatewayAsync(string id, GatewayLimits? limits, BudgetSpec? budget, string? actor, CancellationToken ct)
    {
        ApiKeyRecord? updated;
        limits = limits is { IsEmpty: false } ? limits : null;
        await _writeGate.WaitAsync(ct);
        try
        {
            var current = Get(id);
            if (current is null) return null;
            if (!await _store.UpdateApiKeyGatewayAsync(id, limits, budget, ct)) return null;
            updated = current with { Limits = limits, Budget = budget };
            Publish([.. Volatile.Read(ref _byHash).Values.Where(k => k.Id != id), updated], _projects.Values);
        }
        finally
        {
            _writeGate.Release();
        }
        LogKeyGatewayChanged(_logger, updated.Id, updated.Name, actor ?? "-");
        if (updated.Role == ApiKeyRoles.Endpoint) EndpointKeysChanged?.Invoke();
        return updated;
    }

    public ProjectRecord? GetProject(string name) => Volatile.Read(ref _projects).GetValueOrDefault(name);

    /// <summary>Replaces a project's gateway settings; the updated record, or null when there is no such project.</summary>
    public async Task<ProjectRecord?> UpdateProjectGatewayAsync(string name, GatewayLimits? limits, BudgetSpec? budget, string? actor, CancellationToken ct)
    {
        ProjectRecord? updated;
        limits = limits is { IsEmpty: false } ? limits : null;
        await _writeGate.WaitAsync(ct);
        try
        {
            var current = GetProject(name);
            if (current is null) return null;
            if (!await _store.UpdateProjectGatewayAsync(name, limits, budget, ct)) return null;
            updated = current with { Limits = limits, Budget = budget };
            Publish(_byHash.Values, [.. _projects.Values.Where(p => p.Name != name), updated]);
        }
        finally
        {
            _writeGate.Release();
        }
        LogProjectGatewayChanged(_logger, name, actor ?? "-");
        ProjectGrantsChanged?.Invoke();
        return updated;
    }

    /// <summary>Creates a project; <see cref="StoreConflictException"/> when it exists.</summary>
    public async Task<ProjectRecord> CreateProjectAsync(string name, string? description, string? actor, CancellationToken ct) =>
        await CreateProjectAsync(name, description, null, null, actor, ct);

    /// <summary>Creates a project with gateway settings; <see cref="StoreConflictException"/> when it exists.</summary>
    public async Task<ProjectRecord> CreateProjectAsync(string name, string? description, GatewayLimits? limits, BudgetSpec? budget, string? actor, CancellationToken ct)
    {
        var project = new ProjectRecord
        {
            Name = name, Description = description, CreatedAt = _time.GetUtcNow(), Limits = limits is { IsEmpty: false } ? limits : null, Budget = budget,
        };
        await _writeGate.WaitAsync(ct);
        try
        {
            await _store.CreateProjectAsync(project, ct);
            Publish(_byHash.Values, [.. _projects.Values, project]);
        }
        finally
        {
            _writeGate.Release();
        }
        LogProjectCreated(_logger, name, actor ?? "-");
        if (project.Limits is not null || project.Budget is not null) ProjectGrantsChanged?.Invoke();
        return project;
    }

    private static bool Same(FrozenDictionary<string, decimal> current, IReadOnlyDictionary<string, decimal> next) =>
        current.Count == next.Count && next.All(kv => current.TryGetValue(kv.Key, out var usd) && usd == kv.Value);

    private static decimal? Spent(FrozenDictionary<string, decimal> spent, string scope, BudgetSpec? budget) =>
        budget is not null && spent.TryGetValue(scope, out var usd) && usd > 0 ? usd : null;

    /// <summary>The keys (by id) and projects with a budget, with the period each budget counts in now.</summary>
    public (IReadOnlyList<(string Id, string Period)> Keys, IReadOnlyList<(string Name, string Period)> Projects) Budgets()
    {
        var keys = Volatile.Read(ref _byHash).Values
            .Where(k => k.Role == ApiKeyRoles.Endpoint && k.RevokedAt is null && k.Budget is not null)
            .Select(k => (k.Id, k.Budget!.Period)).ToList();
        var projects = Volatile.Read(ref _projects).Values.Where(p => p.Budget is not null).Select(p => (p.Name, p.Budget!.Period)).ToList();
        return (keys, projects);
    }

    /// <summary>
    /// What each key (by id) and project spent in its budget's current period, as the usage ledger says: edges
    /// get it with the grants, so an edge that starts again (or one without Redis) counts from there, not from 0.
    /// Raises the change events when a grant changed.
    /// </summary>
    public async Task SetSpentAsync(IReadOnlyDictionary<string, decimal> keys, IReadOnlyDictionary<string, decimal> projects, CancellationToken ct)
    {
        await _writeGate.WaitAsync(ct);
        bool keysChanged, projectsChanged;
        try
        {
            // The usual refresh: nothing new was spent, so no grant is rebuilt.
            if (Same(_keySpent, keys) && Same(_projectSpent, projects)) return;
            var oldKeys = Volatile.Read(ref _endpointKeys);
            var oldProjects = Volatile.Read(ref _projectGrants);
            _keySpent = keys.ToFrozenDictionary(StringComparer.Ordinal);
            _projectSpent = projects.ToFrozenDictionary(StringComparer.Ordinal);
            Publish(_byHash.Values, _projects.Values);
            var newKeys = Volatile.Read(ref _endpointKeys);
            keysChanged = newKeys.Count != oldKeys.Count || newKeys.Any(g => !oldKeys.TryGetValue(g.Key, out var o) || o != g.Value);
            projectsChanged = !ReferenceEquals(oldProjects, Volatile.Read(ref _projectGrants));
        }
        finally
        {
            _writeGate.Release();
        }
        if (keysChanged) EndpointKeysChanged?.Invoke();
        if (projectsChanged) ProjectGrantsChanged?.Invoke();
    }

    private void Publish(IEnumerable<ApiKeyRecord> keys, IEnumerable<ProjectRecord> projects)
    {
        var byHash = keys.ToFrozenDictionary(k => k.Hash, StringComparer.Ordinal);
        var byName = projects.ToFrozenDictionary(p => p.Name, StringComparer.Ordinal);
        var grants = byName.Values
            .Where(p => p.Limits is not null || p.Budget is not null)
            .ToFrozenDictionary(p => p.Name, p => new ProjectGrant { Limits = p.Limits, Budget = p.Budget, SpentUsd = Spent(_projectSpent, p.Name, p.Budget) }, StringComparer.Ordinal);
        // Edges resend only when the set changed: keep the published one when it is equal.
        var previous = Volatile.Read(ref _projectGrants);
        if (previous.Count != grants.Count || grants.Any(g => !previous.TryGetValue(g.Key, out var p) || p != g.Value)) Volatile.Write(ref _projectGrants, grants);
        Volatile.Write(ref _projects, byName);
        Volatile.Write(ref _endpointKeys, byHash.Values
            .Where(k => k.Role == ApiKeyRoles.Endpoint && k.RevokedAt is null && k.Project is not null)
            .ToFrozenDictionary(k => k.Hash, k => new EndpointKeyGrant(k.Project!, k.ExpiresAt)
            {
                KeyId = k.Id, Limits = k.Limits, Budget = k.Budget, SpentUsd = Spent(_keySpent, k.Id, k.Budget),
            }, StringComparer.Ordinal));
        Volatile.Write(ref _byId, byHash.Values.ToFrozenDictionary(k => k.Id, StringComparer.Ordinal));
        Volatile.Write(ref _byHash, byHash);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Created the operator API key and wrote it to {Path} (mode 0600); use it with `shoal login` or SHOAL_API_KEY, and keep it secret")]
    private static partial void LogBootstrapKey(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "API key {Id} ({Name}) created: role {Role}, project {Project}, by {Actor}")]
    private static partial void LogKeyCreated(ILogger logger, string id, string name, string role, string project, string actor);

    [LoggerMessage(Level = LogLevel.Information, Message = "API key {Id} ({Name}) revoked by {Actor}")]
    private static partial void LogKeyRevoked(ILogger logger, string id, string name, string actor);

    [LoggerMessage(Level = LogLevel.Information, Message = "API key {Id} ({Name}): gateway limits and budget changed by {Actor}")]
    private static partial void LogKeyGatewayChanged(ILogger logger, string id, string name, string actor);

    [LoggerMessage(Level = LogLevel.Information, Message = "Project {Name}: gateway limits and budget changed by {Actor}")]
    private static partial void LogProjectGatewayChanged(ILogger logger, string name, string actor);

    [LoggerMessage(Level = LogLevel.Information, Message = "Project {Name} created by {Actor}")]
    private static partial void LogProjectCreated(ILogger logger, string name, string actor);
}

/// <summary>Writes a secret to a file only its owner can read (0600), replacing what was there.</summary>
public static class SecretFile
{
    /// <summary>Writes <paramref name="secret"/> to <paramref name="path"/>; returns the full path.</summary>
    public static string Write(string path, string secret)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp-" + Environment.ProcessId;
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var writer = new StreamWriter(temp, System.Text.Encoding.ASCII, options))
        {
            writer.Write(secret);
            writer.Write('\n');
        }
        File.Move(temp, full, overwrite: true);
        return full;
    }
}
