using Shoal.Contracts;

namespace Shoal.Core.Gateway;

/// <summary>Projects' gateway settings (limits, budgets) as the edge knows them.</summary>
public interface IProjectGrantSource
{
    /// <summary>An immutable snapshot: project name → its grant; projects without limits or budget are left out.</summary>
    IReadOnlyDictionary<string, ProjectGrant> Projects { get; }
}

/// <summary>Project grants pushed to a standalone edge by the control plane (<see cref="ProjectGrantsMessage"/>); none until the first push.</summary>
public sealed class ProjectGrantHolder : IProjectGrantSource
{
    private volatile IReadOnlyDictionary<string, ProjectGrant> _current = new Dictionary<string, ProjectGrant>(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, ProjectGrant> Projects => _current;

    public void Update(IReadOnlyDictionary<string, ProjectGrant> projects) => _current = projects;
}
