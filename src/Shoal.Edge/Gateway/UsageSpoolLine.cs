using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>
/// Checks a spool line as <see cref="UsageSpool"/> reads it back to ship it: the JSON of a
/// <see cref="UsageRecord"/> (as <see cref="ShoalJsonContext"/> writes it), looked at without making
/// the record, against the properties of the record's generated serializer.
/// </summary>
internal static class UsageSpoolLine
{
    // The record's JSON properties as its generated serializer writes them (camelCase, in its order),
    // what each may hold and the place of each required one among them (-1 for the others); and by
    // name whatever the case, as the control plane's reader also matches them.
    private static readonly Property[] s_properties = Properties(out s_requiredCount);
    private static readonly int s_requiredCount;
    private static readonly Dictionary<string, int> s_byName = s_properties.Select((p, i) => (p.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// True when <paramref name="line"/> is a whole JSON object that reads as a <see cref="UsageRecord"/>:
    /// every required property there, every known one holding a value of its type (as the reader would
    /// take it), others skipped. Checked without making the record: a line the control plane could
    /// not read would hold up its whole batch.
    /// </summary>
    public static bool IsRecord(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line);
        Span<bool> seen = stackalloc bool[s_requiredCount];
        // Lines come in the writer's order: the property after the last one is looked at first.
        var next = 0;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var index = next < s_properties.Length && reader.ValueTextEquals(s_properties[next].Utf8Name) ? next : IndexOf(ref reader);
                if (!reader.Read()) return false;
                if (index < 0)
                {
                    reader.Skip();
                    continue;
                }
                var property = s_properties[index];
                if (!Holds(ref reader, property.Type, property.Nullable)) return false;
                if (property.Required >= 0) seen[property.Required] = true;
                next = index + 1;
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read()) return false;
        }
        catch (JsonException)
        {
            return false;
        }
        return !seen.Contains(false);
    }

    private static int IndexOf(ref Utf8JsonReader reader)
    {
        for (var i = 0; i < s_properties.Length; i++)
        {
            if (reader.ValueTextEquals(s_properties[i].Utf8Name)) return i;
        }
        return s_byName.TryGetValue(reader.GetString()!, out var index) ? index : -1;
    }

    private static bool Holds(ref Utf8JsonReader reader, Type type, bool nullable)
    {
        if (reader.TokenType == JsonTokenType.Null) return nullable;
        if (type == typeof(string)) return reader.TokenType == JsonTokenType.String;
        if (type == typeof(bool)) return reader.TokenType is JsonTokenType.True or JsonTokenType.False;
        if (type == typeof(DateTimeOffset)) return reader.TokenType == JsonTokenType.String && reader.TryGetDateTimeOffset(out _);
        if (reader.TokenType != JsonTokenType.Number) return false;
        if (type == typeof(long)) return reader.TryGetInt64(out _);
        if (type == typeof(int)) return reader.TryGetInt32(out _);
        if (type == typeof(double)) return reader.TryGetDouble(out _);
        if (type == typeof(decimal)) return reader.TryGetDecimal(out _);
        return false;
    }

    private static Property[] Properties(out int required)
    {
        var properties = new List<Property>();
        required = 0;
        foreach (var p in ShoalJsonContext.Default.UsageRecord.Properties)
        {
            var underlying = System.Nullable.GetUnderlyingType(p.PropertyType);
            var nullable = !p.IsRequired && (underlying is not null || !p.PropertyType.IsValueType);
            properties.Add(new Property(p.Name, System.Text.Encoding.UTF8.GetBytes(p.Name), underlying ?? p.PropertyType, nullable, p.IsRequired ? required++ : -1));
        }
        return [.. properties];
    }

    private sealed record Property(string Name, byte[] Utf8Name, Type Type, bool Nullable, int Required);
}
