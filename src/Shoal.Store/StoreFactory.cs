using Npgsql;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>Chooses and opens the store named by <c>--database</c>.</summary>
public static class StoreFactory
{
    /// <summary>
    /// Opens PostgreSQL when <paramref name="database"/> is an Npgsql connection string
    /// (<c>Host=…</c>) or a <c>postgres://</c> / <c>postgresql://</c> URL; otherwise (null, empty or
    /// <c>sqlite</c>) SQLite in <paramref name="dataDir"/>, creating the directory. The store is not
    /// migrated yet: call <see cref="IShoalStore.MigrateAsync"/>.
    /// </summary>
    /// <param name="database">The <c>--database</c> value.</param>
    /// <param name="dataDir">The server's data dir, where the SQLite file lives.</param>
    /// <param name="secrets">Seals secret values at rest; null for a store that cannot keep any.</param>
    /// <exception cref="ArgumentException">The value is neither of those, or is malformed.</exception>
    public static IShoalStore Open(string? database, string dataDir, SecretBox? secrets = null)
    {
        var postgres = ResolvePostgresConnectionString(database);
        return postgres is null ? SqliteShoalStore.InDirectory(dataDir, secrets) : new PostgresShoalStore(postgres, secrets);
    }

    /// <summary>
    /// The Npgsql connection string that <paramref name="database"/> stands for, or null when it
    /// means SQLite (null, empty or <c>sqlite</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The value is neither SQLite nor a valid PostgreSQL address.</exception>
    public static string? ResolvePostgresConnectionString(string? database)
    {
        if (string.IsNullOrWhiteSpace(database) || database.Trim().Equals("sqlite", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        database = database.Trim();
        if (database.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) ||
            database.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            return FromUrl(database);
        }

        if (!database.Contains('=', StringComparison.Ordinal))
        {
            throw Invalid("expected a PostgreSQL connection string such as \"Host=db;Database=shoal;Username=shoal\", " +
                "a postgres:// URL, or nothing for SQLite in the data dir");
        }

        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(database);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidOperationException)
        {
            throw Invalid($"malformed PostgreSQL connection string: {ex.Message}", ex);
        }

        if (string.IsNullOrWhiteSpace(builder.Host))
        {
            throw Invalid("the PostgreSQL connection string has no Host");
        }

        return builder.ConnectionString;
    }

    private static string FromUrl(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
        {
            throw Invalid("malformed PostgreSQL URL; expected postgres://user:password@host:port/database");
        }

        var builder = new NpgsqlConnectionStringBuilder { Host = uri.Host.Trim('[', ']') };
        if (!uri.IsDefaultPort && uri.Port > 0)
        {
            builder.Port = uri.Port;
        }

        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }

        var path = Uri.UnescapeDataString(uri.AbsolutePath.Trim('/'));
        if (path.Length > 0)
        {
            builder.Database = path;
        }

        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            try
            {
                builder[key.Equals("sslmode", StringComparison.OrdinalIgnoreCase) ? "SSL Mode" : key] = value;
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidOperationException)
            {
                throw Invalid($"unsupported PostgreSQL URL parameter '{key}': {ex.Message}", ex);
            }
        }

        return builder.ConnectionString;
    }

    private static ArgumentException Invalid(string message, Exception? inner = null) =>
        new($"--database: {message}", inner);
}
