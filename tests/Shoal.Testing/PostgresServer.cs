using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace Shoal.Testing;

/// <summary>
/// A real, throw-away PostgreSQL server for tests: <c>initdb</c> into a temp dir, <c>pg_ctl start</c>
/// on 127.0.0.1 and a free port, trust auth, durability off for speed. Start one per test assembly
/// (see <see cref="PostgresFixture"/>) and give each test class its own database with
/// <see cref="CreateDatabaseAsync"/>. Dispose stops it and deletes its files.
/// </summary>
public sealed class PostgresServer : IDisposable, IAsyncDisposable
{
    private const string SuperUser = "postgres";
    private static readonly TimeSpan s_commandTimeout = TimeSpan.FromSeconds(90);

    private readonly string _root;
    private readonly string _dataDir;
    private readonly bool _asPostgresUser;
    private readonly NpgsqlDataSource _admin;
    private int _disposed;

    private PostgresServer(string binDirectory, string root, bool asPostgresUser, int port)
    {
        BinDirectory = binDirectory;
        _root = root;
        _dataDir = Path.Combine(root, "data");
        _asPostgresUser = asPostgresUser;
        Port = port;
        ConnectionString = Build("postgres");
        _admin = NpgsqlDataSource.Create(ConnectionString);
    }

    /// <summary>Where <c>initdb</c> and <c>pg_ctl</c> were found.</summary>
    public string BinDirectory { get; }

    public int Port { get; }

    /// <summary>Superuser connection to the <c>postgres</c> database.</summary>
    public string ConnectionString { get; }

    /// <summary>
    /// The directory holding <c>initdb</c> and <c>pg_ctl</c>: <c>$SHOAL_PG_BIN</c>, then <c>PATH</c>,
    /// then <c>/usr/local/bin</c>, then the highest <c>/usr/lib/postgresql/*/bin</c>; null if none.
    /// </summary>
    public static string? FindBinDirectory()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("SHOAL_PG_BIN") is { Length: > 0 } fromEnv)
        {
            candidates.Add(fromEnv);
        }

        candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        candidates.Add("/usr/local/bin");
        if (Directory.Exists("/usr/lib/postgresql"))
        {
            candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql")
                .OrderByDescending(d => double.TryParse(Path.GetFileName(d), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : 0)
                .Select(d => Path.Combine(d, "bin")));
        }

        return candidates.FirstOrDefault(d => File.Exists(Path.Combine(d, "initdb")) && File.Exists(Path.Combine(d, "pg_ctl")));
    }

    /// <summary>Creates a cluster in a temp dir and starts it; throws with the server log if it cannot.</summary>
    public static async Task<PostgresServer> StartAsync(CancellationToken cancellationToken = default)
    {
        var bin = FindBinDirectory() ?? throw new InvalidOperationException(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH, in /usr/local/bin or in " +
            "/usr/lib/postgresql/*/bin. Run scripts/test.sh, which installs them (as root), or set SHOAL_PG_BIN.");

        // initdb and postgres refuse to run as root: then the cluster belongs to the postgres user,
        // in a dir it can reach (/tmp rather than a TMPDIR under /root).
        var asPostgresUser = Environment.UserName == "root";
        var tempBase = asPostgresUser ? "/tmp" : Path.GetTempPath();
        var root = Path.Combine(tempBase, "shoal-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var socketDir = Path.Combine(root, "sock");
        Directory.CreateDirectory(socketDir);
        try
        {
            if (asPostgresUser)
            {
                await RunAsync("chown", ["-R", SuperUser + ":", root], root, cancellationToken);
            }

            var dataDir = Path.Combine(root, "data");
            await RunAsync(bin, "initdb", asPostgresUser,
                ["-D", dataDir, "-U", SuperUser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                root, cancellationToken);
            await File.AppendAllTextAsync(Path.Combine(dataDir, "postgresql.conf"), $"""

                listen_addresses = '127.0.0.1'
                unix_socket_directories = '{socketDir}'
                fsync = off
                full_page_writes = off
                synchronous_commit = off
                max_connections = 300
                shared_buffers = 32MB
                logging_collector = off
                """, cancellationToken);

            var log = Path.Combine(root, "postgres.log");
            for (var attempt = 1; ; attempt++)
            {
                var port = FreePort.Next();
                try
                {
                    await RunAsync(bin, "pg_ctl", asPostgresUser,
                        ["-D", dataDir, "-l", log, "-w", "-t", "60", "-o", $"-p {port}", "start"], root, cancellationToken);
                    var server = new PostgresServer(bin, root, asPostgresUser, port);
                    await server.WaitForConnectionAsync(cancellationToken);
                    return server;
                }
                catch (InvalidOperationException) when (attempt < 3 && ReadLog(log).Contains("could not bind", StringComparison.OrdinalIgnoreCase))
                {
                    // Someone took the port between FreePort and bind: try another.
                }
                catch (InvalidOperationException ex)
                {
                    throw new InvalidOperationException($"{ex.Message}\n--- postgres.log ---\n{ReadLog(log)}", ex);
                }
            }
        }
        catch
        {
            TryDelete(root);
            throw;
        }
    }

    /// <summary>Creates an empty database and returns a connection string to it.</summary>
    public async Task<string> CreateDatabaseAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        await using var command = _admin.CreateCommand($"CREATE DATABASE \"{name.Replace("\"", "\"\"", StringComparison.Ordinal)}\"");
        await command.ExecuteNonQueryAsync(cancellationToken);
        return Build(name);
    }

    /// <summary>
    /// The <c>pg_dump</c> (plain SQL: schema and every row) of the database a connection string
    /// names, as text: what a backup of it would hold.
    /// </summary>
    public async Task<string> DumpAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        var database = new NpgsqlConnectionStringBuilder(connectionString).Database
            ?? throw new ArgumentException("the connection string names no database", nameof(connectionString));
        var file = Path.Combine(Path.GetTempPath(), $"shoal-pg-dump-{Guid.NewGuid():N}.sql");
        try
        {
            await RunAsync(FindTool("pg_dump"),
                ["-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", SuperUser, "-f", file, database],
                Path.GetTempPath(), cancellationToken);
            return await File.ReadAllTextAsync(file, cancellationToken);
        }
        finally
        {
            File.Delete(file);
        }
    }

    // Beside initdb, or beside what a linked initdb points to (/usr/local/bin links only the server tools).
    private string FindTool(string tool)
    {
        var beside = Path.Combine(BinDirectory, tool);
        if (File.Exists(beside)) return beside;
        var initdb = new FileInfo(Path.Combine(BinDirectory, "initdb")).ResolveLinkTarget(returnFinalTarget: true);
        if (initdb is not null && Path.GetDirectoryName(initdb.FullName) is { } real && File.Exists(Path.Combine(real, tool)))
        {
            return Path.Combine(real, tool);
        }
        return tool;
    }

    private string Build(string database) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = Port,
        Username = SuperUser,
        Database = database,
        IncludeErrorDetail = true,
    }.ConnectionString;

    private async Task WaitForConnectionAsync(CancellationToken cancellationToken)
    {
        // pg_ctl -w already waited; this proves TCP works as the tests will use it.
        await using var command = _admin.CreateCommand("SELECT 1");
        await command.ExecuteScalarAsync(cancellationToken);
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _admin.Dispose();
        try
        {
            RunAsync(BinDirectory, "pg_ctl", _asPostgresUser, ["-D", _dataDir, "-m", "immediate", "-w", "stop"], _root, CancellationToken.None)
                .GetAwaiter().GetResult();
        }
        catch (InvalidOperationException)
        {
            // Already stopped; the files go anyway.
        }

        TryDelete(_root);
    }

    private static string ReadLog(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path) : "";
        }
        catch (IOException)
        {
            return "";
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static Task RunAsync(string bin, string tool, bool asPostgresUser, string[] args, string workingDirectory, CancellationToken cancellationToken) =>
        asPostgresUser
            ? RunAsync("runuser", ["-u", SuperUser, "--", Path.Combine(bin, tool), .. args], workingDirectory, cancellationToken)
            : RunAsync(Path.Combine(bin, tool), args, workingDirectory, cancellationToken);

    private static async Task RunAsync(string fileName, string[] args, string workingDirectory, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["LC_ALL"] = "C";
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {fileName}");
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(s_commandTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{fileName} {string.Join(' ', args)} did not finish in {s_commandTimeout.TotalSeconds} s:\n{Text(output)}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{fileName} {string.Join(' ', args)} exited with {process.ExitCode}:\n{Text(output)}");
        }
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }

    private static string Text(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }
}
