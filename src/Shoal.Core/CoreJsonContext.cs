using System.Text.Json;
using System.Text.Json.Serialization;
using Shoal.Core.Clusters;

namespace Shoal.Core;

/// <summary>JSON for domain types kept in the store.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ClusterSpec))]
[JsonSerializable(typeof(ClusterRollout))]
public sealed partial class CoreJsonContext : JsonSerializerContext;
