using System.Text.Json;
using System.Text.Json.Serialization;

namespace Shoal.Contracts;

/// <summary>Source-generated JSON for every type on the wire: camelCase, nulls omitted.</summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(AgentMessage))]
[JsonSerializable(typeof(EdgeMessage))]
[JsonSerializable(typeof(EdgeRequest))]
[JsonSerializable(typeof(CreateClusterRequest))]
[JsonSerializable(typeof(UpdateClusterRequest))]
[JsonSerializable(typeof(ClusterDto))]
[JsonSerializable(typeof(ClusterDto[]))]
[JsonSerializable(typeof(ClusterStatusDto))]
[JsonSerializable(typeof(ClusterEventDto[]))]
[JsonSerializable(typeof(NodeDto))]
[JsonSerializable(typeof(NodeDto[]))]
[JsonSerializable(typeof(GpuTypeDto[]))]
[JsonSerializable(typeof(CreateTokenRequest))]
[JsonSerializable(typeof(TokenCreatedDto))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(OpenAiErrorResponse))]
[JsonSerializable(typeof(UsageRecord))]
[JsonSerializable(typeof(UsageRecord[]))]
[JsonSerializable(typeof(UsageReportDto))]
[JsonSerializable(typeof(GatewayLimits))]
[JsonSerializable(typeof(BudgetSpec))]
[JsonSerializable(typeof(ClusterPrice))]
[JsonSerializable(typeof(CreateApiKeyRequest))]
[JsonSerializable(typeof(UpdateGatewaySettingsRequest))]
[JsonSerializable(typeof(ApiKeyDto))]
[JsonSerializable(typeof(ApiKeyDto[]))]
[JsonSerializable(typeof(ApiKeyCreatedDto))]
[JsonSerializable(typeof(WhoAmIDto))]
[JsonSerializable(typeof(CreateProjectRequest))]
[JsonSerializable(typeof(ProjectDto))]
[JsonSerializable(typeof(ProjectDto[]))]
[JsonSerializable(typeof(TokenDto[]))]
[JsonSerializable(typeof(RouteTable))]
[JsonSerializable(typeof(NodeHardware))]
[JsonSerializable(typeof(HealthCheckSpec))]
[JsonSerializable(typeof(AutoscaleSpec))]
[JsonSerializable(typeof(AutoscaleRequest))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(DateTimeOffset[]))]
[JsonSerializable(typeof(int[]))]
public sealed partial class ShoalJsonContext : JsonSerializerContext;
