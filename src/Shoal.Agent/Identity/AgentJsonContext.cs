using System.Text.Json;
using System.Text.Json.Serialization;

namespace Shoal.Agent.Identity;

/// <summary>Source-generated JSON for the agent's own files.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(NodeIdentity))]
internal sealed partial class AgentJsonContext : JsonSerializerContext;
