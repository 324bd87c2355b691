using System.Text;

namespace Shoal.Agent.Runtimes;

/// <summary>
/// Appends a replica's output to <c>replicas/&lt;id&gt;.log</c>; when the file passes its size
/// limit it is moved to <c>.log.1</c> (replacing the older one) and a new one begun, so a chatty
/// replica never fills the disk.
/// </summary>
public sealed class ReplicaLogFile : IDisposable
{
    private readonly Lock _lock = new();
    private readonly string _path;
    private readonly long _maxBytes;
    private FileStream? _stream;

    public ReplicaLogFile(string path, long maxBytes)
    {
        _path = path;
        _maxBytes = Math.Max(4096, maxBytes);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        _stream = Open();
    }

    public string FilePath => _path;

    public void WriteLine(string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line + "\n");
        lock (_lock)
        {
            if (_stream is null)
            {
                return;
            }
            try
            {
                if (_stream.Length + bytes.Length > _maxBytes)
                {
                    _stream.Dispose();
                    File.Move(_path, _path + ".1", overwrite: true);
                    _stream = Open();
                }
                _stream.Write(bytes);
                _stream.Flush();
            }
            catch (IOException)
            {
                // A full disk must not take the replica (or the agent) down; the output is lost.
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _stream?.Dispose();
            _stream = null;
        }
    }

    private FileStream Open() => new(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
}
