using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Agents;

/// <summary>
/// The images the nodes' process runtimes run, as their hellos said, with the env names each node's
/// operator allowed: the <see cref="ProcessImagePolicy"/> that deploys and updates are checked
/// against. Kept in memory by each server for the nodes connected to it since it started; the
/// agent checks again before it starts a replica, so a node this server has not heard from is
/// still covered.
/// </summary>
public sealed class ProcessImageDirectory
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (string[] Images, string[] AllowedEnv)> _nodes = new(StringComparer.Ordinal);
    private ProcessImagePolicy _policy = ProcessImagePolicy.BuiltIn;

    /// <summary>The policy as of the latest hello.</summary>
    public ProcessImagePolicy Policy => Volatile.Read(ref _policy);

    /// <summary>Takes in what a node's hello says about its process runtime.</summary>
    public void NodeSaidHello(string nodeId, HelloMessage hello)
    {
        lock (_lock)
        {
            if (_nodes.TryGetValue(nodeId, out var known)
                && known.Images.SequenceEqual(hello.ProcessImages, StringComparer.Ordinal)
                && known.AllowedEnv.SequenceEqual(hello.AllowedEnv, StringComparer.Ordinal))
            {
                return;
            }
            _nodes[nodeId] = (hello.ProcessImages, hello.AllowedEnv);
            var allowed = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
            foreach (var (images, env) in _nodes.Values)
            {
                foreach (var image in images)
                {
                    if (!allowed.TryGetValue(image, out var names))
                    {
                        allowed[image] = names = new HashSet<string>(StringComparer.Ordinal);
                    }
                    names.UnionWith(env);
                }
            }
            Volatile.Write(ref _policy, new ProcessImagePolicy(allowed.ToDictionary(kv => kv.Key, kv => (IReadOnlySet<string>)kv.Value, StringComparer.Ordinal)));
        }
    }
}
