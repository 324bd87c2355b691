namespace Shoal.Testing;

/// <summary>Trait names so a developer can run the fast set alone: <c>--filter "Category!=Postgres&amp;Category!=EndToEnd"</c>.</summary>
public static class Categories
{
    public const string Name = "Category";
    public const string Postgres = "Postgres";
    public const string Docker = "Docker";
    public const string EndToEnd = "EndToEnd";

    /// <summary>The chaos suite (also <see cref="EndToEnd"/>): <c>--filter Category=Chaos</c> runs it alone.</summary>
    public const string Chaos = "Chaos";
}
