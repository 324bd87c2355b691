using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;

namespace Shoal.Sim;

/// <summary>Writes OpenAI-shaped JSON bodies and server-sent events straight into the response pipe.</summary>
internal static class OpenAiJson
{
    public const string JsonContentType = "application/json";

    /// <summary>Writes <c>{"error":{"message","type","param","code"}}</c> with the given status.</summary>
    public static Task WriteErrorAsync(HttpContext ctx, int status, string message, string type, string code)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = JsonContentType;
        using var json = new Utf8JsonWriter(ctx.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteStartObject("error");
        json.WriteString("message", message);
        json.WriteString("type", type);
        json.WriteNull("param");
        json.WriteString("code", code);
        json.WriteEndObject();
        json.WriteEndObject();
        json.Flush();
        return ctx.Response.BodyWriter.FlushAsync(ctx.RequestAborted).AsTask();
    }

    public static void WriteHeader(Utf8JsonWriter json, string id, string kind, long created, SimOptions options)
    {
        json.WriteString("id", id);
        json.WriteString("object", kind);
        json.WriteNumber("created", created);
        json.WriteString("model", options.Model);
        json.WriteString("system_fingerprint", options.Fingerprint);
    }

    public static void WriteUsage(Utf8JsonWriter json, int promptTokens, int completionTokens)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", promptTokens);
        json.WriteNumber("completion_tokens", completionTokens);
        json.WriteNumber("total_tokens", promptTokens + completionTokens);
        json.WriteEndObject();
    }

    /// <summary>Starts one <c>data: </c> event; the caller writes one JSON object, then calls <see cref="EndEvent"/>.</summary>
    public static void BeginEvent(PipeWriter pipe, Utf8JsonWriter json)
    {
        pipe.Write("data: "u8);
        json.Reset(pipe);
    }

    public static void EndEvent(PipeWriter pipe, Utf8JsonWriter json)
    {
        json.Flush();
        pipe.Write("\n\n"u8);
    }

    public static void WriteDone(PipeWriter pipe) => pipe.Write("data: [DONE]\n\n"u8);
}
