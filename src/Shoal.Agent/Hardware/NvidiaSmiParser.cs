using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Gpus;

namespace Shoal.Agent.Hardware;

/// <summary>GPUs read from nvidia-smi, and the lines that could not be read.</summary>
public sealed record NvidiaSmiResult(IReadOnlyList<GpuInfo> Gpus, IReadOnlyList<string> Problems);

/// <summary>
/// Parses the output of
/// <c>nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits</c>.
/// </summary>
public static class NvidiaSmiParser
{
    /// <summary>The arguments that produce the output <see cref="Parse"/> reads.</summary>
    public static readonly string[] Arguments = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"];

    /// <summary>
    /// Reads one GPU per line. Blank lines are ignored; a line that is not
    /// <c>index, uuid, name, memory</c> is skipped and described in <see cref="NvidiaSmiResult.Problems"/>.
    /// </summary>
    public static NvidiaSmiResult Parse(string output)
    {
        var gpus = new List<GpuInfo>();
        var problems = new List<string>();
        var lineNumber = 0;
        foreach (var raw in output.Split('\n'))
        {
            lineNumber++;
            var line = raw.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            var fields = line.Split(',');
            if (fields.Length != 4)
            {
                problems.Add($"line {lineNumber}: expected 4 comma-separated fields (index, uuid, name, memory.total), got {fields.Length}: '{Truncate(line)}'");
                continue;
            }
            var indexText = fields[0].Trim();
            var uuid = fields[1].Trim();
            var name = fields[2].Trim();
            var memoryText = fields[3].Trim();
            if (!int.TryParse(indexText, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            {
                problems.Add($"line {lineNumber}: GPU index '{Truncate(indexText)}' is not a number");
                continue;
            }
            if (uuid.Length == 0 || name.Length == 0)
            {
                problems.Add($"line {lineNumber}: GPU {index} has no uuid or name");
                continue;
            }
            long memory;
            if (long.TryParse(memoryText, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                memory = parsed;
            }
            else if (memoryText.StartsWith('['))
            {
                // "[N/A]" or "[Not Supported]": keep the GPU, fall back to the catalogue's figure.
                memory = 0;
            }
            else
            {
                problems.Add($"line {lineNumber}: GPU {index} memory '{Truncate(memoryText)}' is not a number of MiB");
                continue;
            }
            var slug = GpuCatalog.SlugFromName(name, memory);
            if (memory == 0)
            {
                memory = GpuCatalog.Find(slug)?.MemoryMiB ?? 0;
            }
            gpus.Add(new GpuInfo { Index = index, Uuid = uuid, Name = name, Type = slug, MemoryMiB = memory });
        }
        return new NvidiaSmiResult(gpus, problems);
    }

    private static string Truncate(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
