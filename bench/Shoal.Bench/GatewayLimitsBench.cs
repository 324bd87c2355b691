using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.RegularExpressions;
using Shoal.Contracts;
using Shoal.Testing;
using StackExchange.Redis;

namespace Shoal.Bench;

/// <summary>
/// Issue 16, must-show 1: three standalone edges (<c>shoal edge</c> processes) sharing one real
/// redis-server, <c>clients</c> concurrent clients (half of them streaming; half small requests of
/// about 60 tokens, half large of about 1,250, so both the 100 RPM and the 50k TPM bind) on one
/// endpoint key, for <c>seconds</c>; then the same with Redis killed half-way.
/// Admission times are read back from Redis (the key's sorted set, by the <c>x-request-id</c> each
/// client got), so "admitted per 60 s window" is exact while Redis lives; during the outage the
/// clients' own receive times bound it. Tokens per 60 s window (by Redis' admission times): what was
/// reserved (each body's reservation, learnt from the edge's own "needs N tokens" answer), what the
/// clients received (the responses' <c>usage</c>) and what Redis settled; the overshoot is what the
/// clients received beyond 50k in the worst window, in units of the largest single reservation.
/// Every 429 is checked for Retry-After, the x-ratelimit headers and OpenAI's error, and sorted by
/// kind (requests, tokens, Redis did not confirm). Usage: <c>gateway-limits [seconds] [clients] [both|up|killed]</c>.
/// </summary>
internal static class GatewayLimitsBench
{
    private const int Rpm = 100;
    private const long Tpm = 50_000;
    private const int SmallMaxTokens = 40;
    private const int LargeMaxTokens = 200;
    /// <summary>The large requests' prompt: about 1,000 tokens (a long prompt reserves tokens without long decoding).</summary>
    private static readonly string s_largePrompt = string.Concat(Enumerable.Repeat("Hello there, how are you? ", 154));

    /// <summary>A client's body: a short prompt and 40 tokens, or a long prompt and 200; streamed ones ask for usage.</summary>
    private static string Body(bool stream, bool large) =>
        "{\"model\":\"shoal-sim\"" + (stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "")
        + ",\"max_tokens\":" + (large ? LargeMaxTokens : SmallMaxTokens).ToString(CultureInfo.InvariantCulture)
        + ",\"messages\":[{\"role\":\"user\",\"content\":\"" + (large ? s_largePrompt : "Hello there, how are you?") + "\"}]}";

    public static async Task RunAsync(string[] args)
    {
        var seconds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 180;
        var clients = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 300;
        Console.WriteLine(Fmt($"## Gateway limits: 3 edges sharing one redis-server, {clients} clients on one key (100 RPM, 50k TPM), {seconds} s per run, {DateTime.UtcNow:yyyy-MM-dd}"));
        var which = args.Length > 3 ? args[3] : "both";
        if (which is not ("both" or "up" or "killed")) throw new ArgumentException("the third argument is both, up or killed");
        if (which != "killed") await RunOnceAsync(seconds, clients, killRedis: false);
        if (which != "up") await RunOnceAsync(seconds, clients, killRedis: true);
    }

    private static async Task RunOnceAsync(int seconds, int clientCount, bool killRedis)
    {
        using var dir = new TempDirectory("shoal-limits-bench");
        var apiPort = FreePort.Next();
        await using var redis = await RedisServer.StartAsync();
        var processes = new List<ShoalProcess>();
        try
        {
            processes.Add(ShoalProcess.Start("server",
            [
                "server", "--listen", $"127.0.0.1:{apiPort}", "--no-edge", "--data-dir", dir.Combine("server"),
                "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes",
            ]));
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
            await UntilAsync(async () => (await TryAsync(() => api.GetAsync("/healthz")))?.IsSuccessStatusCode == true, TimeSpan.FromSeconds(60));
            api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")));
            var token = await api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1 }, ShoalJsonContext.Default.CreateTokenRequest);
            processes.Add(ShoalProcess.Start("node",
            [
                "agent", "--server", api.BaseAddress!.ToString(), "--token", (await token.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token,
                "--name", "node", "--simulate-gpus", "rtx-4090:1", "--data-dir", dir.Combine("node"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
            ]));
            (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "chat", Image = "shoal/sim", Gpu = "rtx-4090", Env = new() { ["SIM_BATCH_SLOTS"] = "64", ["SIM_DECODE_MS"] = "5", ["SIM_PREFILL_MS"] = "0" },
            }, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            var limited = await CreateKeyAsync(api, "limited", new GatewayLimits { RequestsPerMinute = Rpm, TokensPerMinute = Tpm });
            var probe = await CreateKeyAsync(api, "probe", null);
            // A key whose token limit (1) no request fits: the edge's answer names each body's reservation.
            var sizer = await CreateKeyAsync(api, "sizer", new GatewayLimits { TokensPerMinute = 1 });
            var edgePorts = new[] { FreePort.Next(), FreePort.Next(), FreePort.Next() };
            var metricsKey = "shoal_mk_bench" + Guid.NewGuid().ToString("N");
            await File.WriteAllTextAsync(dir.Combine("metrics.key"), metricsKey);
            for (var i = 0; i < 3; i++)
            {
                processes.Add(ShoalProcess.Start($"edge-{i + 1}",
                [
                    "edge", "--server", api.BaseAddress!.ToString(), "--key-file", dir.Combine("server", "edge.key"), "--listen", $"127.0.0.1:{edgePorts[i]}",
                    "--redis", redis.Configuration, "--name", $"edge-{i + 1}", "--log-level", "Warning", "--metrics-key-file", dir.Combine("metrics.key"),
                ]));
            }
            foreach (var port in edgePorts)
            {
                using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", probe.Key);
                await UntilAsync(async () => (await TryAsync(() => http.GetAsync("/c/chat/v1/models")))?.IsSuccessStatusCode == true, TimeSpan.FromSeconds(300));
            }
            // Every edge has registered in Redis (heartbeat 5 s).
            await Task.Delay(TimeSpan.FromSeconds(6));
            var reservations = new Dictionary<(bool Stream, bool Large), long>();
            using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePorts[0]}"), Timeout = TimeSpan.FromSeconds(30) })
            {
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", sizer.Key);
                foreach (var kind in new[] { (false, false), (true, false), (false, true), (true, true) })
                {
                    using var answer = await http.PostAsync("/c/chat/v1/chat/completions", new StringContent(Body(kind.Item1, kind.Item2), Encoding.UTF8, "application/json"));
                    var needs = Regex.Match(await answer.Content.ReadAsStringAsync(), "needs ([0-9]+) tokens");
                    reservations[kind] = needs.Success ? long.Parse(needs.Groups[1].Value, CultureInfo.InvariantCulture)
                        : throw new InvalidOperationException($"the sizer key's answer ({(int)answer.StatusCode}) names no reservation");
                }
            }
            var largestReservation = reservations.Values.Max();

            await using var watcher = await ConnectionMultiplexer.ConnectAsync(new ConfigurationOptions { EndPoints = { redis.Configuration }, AbortOnConnectFail = false });
            var admissions = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
            var settled = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
            var oks = new ConcurrentQueue<Ok>();
            var refusals = 0L;
            var refusedBy = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
            var badRefusals = new ConcurrentQueue<string>();
            var errors = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
            var clock = Stopwatch.StartNew();
            var epochMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            var killAt = killRedis ? TimeSpan.FromSeconds(seconds / 2.0) : (TimeSpan?)null;
            var killedAtMs = 0L;
            var handler = new SocketsHttpHandler { MaxConnectionsPerServer = clientCount, PooledConnectionLifetime = TimeSpan.FromMinutes(10) };
            var edges = edgePorts.Select(p =>
            {
                var http = new HttpClient(handler, disposeHandler: false) { BaseAddress = new Uri($"http://127.0.0.1:{p}"), Timeout = TimeSpan.FromSeconds(60) };
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", limited.Key);
                return http;
            }).ToArray();

            var collector = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    if (killAt is { } k && killedAtMs == 0 && clock.Elapsed >= k)
                    {
                        await CollectAsync(watcher, limited.Id, admissions, settled);
                        killedAtMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                        await redis.KillAsync();
                    }
                    if (killedAtMs == 0) await CollectAsync(watcher, limited.Id, admissions, settled);
                    await Task.Delay(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
                if (killedAtMs == 0) await CollectAsync(watcher, limited.Id, admissions, settled);
            });
            var workers = Enumerable.Range(0, clientCount).Select(c => Task.Run(async () =>
            {
                var random = new Random(c);
                var stream = c % 2 == 0;
                var large = c % 4 >= 2;
                var body = Body(stream, large);
                while (!stop.IsCancellationRequested)
                {
                    var edge = (c + random.Next(3)) % 3;
                    var sent = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                    try
                    {
                        using var response = await edges[edge].PostAsync("/c/chat/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"), stop.Token);
                        var text = await response.Content.ReadAsStringAsync(stop.Token);
                        var received = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            oks.Enqueue(new Ok(response.Headers.TryGetValues(GatewayHeaders.RequestId, out var id) ? id.First() : "", edge, sent, received,
                                reservations[(stream, large)], Usage(text)));
                            continue;
                        }
                        if (response.StatusCode == HttpStatusCode.TooManyRequests)
                        {
                            Interlocked.Increment(ref refusals);
                            var missing = new[] { "Retry-After", GatewayHeaders.LimitRequests, GatewayHeaders.RemainingRequests, GatewayHeaders.ResetRequests, GatewayHeaders.LimitTokens, GatewayHeaders.RemainingTokens, GatewayHeaders.ResetTokens }
                                .Where(h => !response.Headers.Contains(h)).ToList();
                            if (!text.Contains("\"rate_limit_exceeded\"", StringComparison.Ordinal)) missing.Add("error code");
                            if (missing.Count > 0) badRefusals.Enqueue(string.Join(",", missing));
                            var by = text.Contains("could not be checked", StringComparison.Ordinal) ? "Redis did not confirm"
                                : text.Contains("\"type\":\"tokens\"", StringComparison.Ordinal) ? "tokens" : "requests";
                            refusedBy.AddOrUpdate(by, 1, static (_, n) => n + 1);
                            var retry = response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1);
                            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(retry.TotalMilliseconds, 1000) * (0.5 + random.NextDouble())), stop.Token);
                            continue;
                        }
                        errors.AddOrUpdate(((int)response.StatusCode).ToString(CultureInfo.InvariantCulture), 1, static (_, n) => n + 1);
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                    }
                    catch (TaskCanceledException)
                    {
                        errors.AddOrUpdate("client timeout (60 s)", 1, static (_, n) => n + 1);
                    }
                    catch (HttpRequestException e)
                    {
                        errors.AddOrUpdate(e.HttpRequestError.ToString(), 1, static (_, n) => n + 1);
                        await Task.Delay(200, CancellationToken.None);
                    }
                }
            })).ToArray();
            await Task.WhenAll(workers);
            await collector;
            var elapsed = clock.Elapsed;

            var all = oks.ToArray();
            var exactEnd = killedAtMs == 0 ? long.MaxValue : killedAtMs;
            var exact = all.Where(o => admissions.ContainsKey(o.RequestId)).Select(o => admissions[o.RequestId]).Order().ToArray();
            var unmatched = all.Count(o => o.Received < exactEnd && !admissions.ContainsKey(o.RequestId));
            var maxExact = MaxInWindow(exact);
            var windowsOver = CountWindowsOver(exact, Rpm);
            Console.WriteLine();
            Console.WriteLine(killRedis ? Fmt($"### Redis killed at {seconds / 2} s") : "### Redis up throughout");
            Console.WriteLine(Fmt($"- {all.Length} admitted, {refusals} refused (429) in {elapsed.TotalSeconds:F0} s; other answers: {(errors.IsEmpty ? "none" : string.Join(", ", errors.Select(e => $"{e.Key} x{e.Value}")))}"));
            Console.WriteLine(Fmt($"- 429s by kind: {string.Join(", ", refusedBy.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => $"{r.Key} {r.Value}"))}"));
            Console.WriteLine(Fmt($"- 429s missing Retry-After, an x-ratelimit header or the OpenAI error: {badRefusals.Count}"));
            Console.WriteLine(Fmt($"- admissions read back from Redis: {exact.Length} (of the {all.Length - all.Count(o => o.Received >= exactEnd)} answered while Redis lived; {unmatched} not found)"));
            Console.WriteLine(Fmt($"- most admitted in any 60 s window (Redis' admission times): {maxExact} (limit {Rpm}); windows over the limit: {windowsOver}"));
            // Tokens per 60 s window of Redis' admission times: reserved, received by the clients, settled in Redis.
            var known = all.Where(o => admissions.ContainsKey(o.RequestId)).Select(o => (At: admissions[o.RequestId], o.Reserved, o.Used, Settled: settled.TryGetValue(o.RequestId, out var v) ? v : o.Reserved))
                .OrderBy(o => o.At).ToArray();
            var reservedMax = MaxSumInWindow(known.Select(o => (o.At, o.Reserved)).ToArray());
            var usedMax = MaxSumInWindow(known.Select(o => (o.At, o.Used)).ToArray());
            var settledMax = MaxSumInWindow(known.Select(o => (o.At, o.Settled)).ToArray());
            var overshoot = Math.Max(0, usedMax - Tpm);
            Console.WriteLine(Fmt($"- reservations: {string.Join(", ", reservations.OrderBy(r => r.Value).Select(r => $"{(r.Key.Large ? "large" : "small")}{(r.Key.Stream ? " streamed" : "")} {r.Value}"))}; largest {largestReservation}"));
            Console.WriteLine(Fmt($"- most tokens in any 60 s window (Redis' admission times), limit {Tpm}: reserved {reservedMax}, received by the clients {usedMax}, settled in Redis {settledMax}; responses without usage: {known.Count(o => o.Used < 0)}"));
            Console.WriteLine(Fmt($"- token overshoot (received beyond {Tpm} in the worst window): {overshoot} = {(double)overshoot / largestReservation:F2} of the largest reservation"));
            foreach (var minute in Enumerable.Range(0, (int)Math.Ceiling(elapsed.TotalMinutes)))
            {
                var from = epochMs + minute * 60_000L;
                var inMinute = known.Where(o => o.At >= from && o.At < from + 60_000).ToArray();
                Console.WriteLine(Fmt($"  - minute {minute + 1}: {exact.Count(t => t >= from && t < from + 60_000)} admitted (Redis times), {all.Count(o => o.Received >= from && o.Received < from + 60_000)} answered 200 (client times); tokens reserved {inMinute.Sum(o => o.Reserved)}, received {inMinute.Sum(o => Math.Max(0, o.Used))}"));
            }
            if (killedAtMs != 0)
            {
                var after = all.Where(o => o.Received >= killedAtMs).ToArray();
                for (var e = 0; e < 3; e++)
                {
                    var mine = after.Where(o => o.Edge == e).Select(o => o.Sent).Order().ToArray();
                    Console.WriteLine(Fmt($"- after the kill, edge-{e + 1}: {mine.Length} admitted; most in any 60 s window (client send times) {MaxInWindow(mine)} (its share: {Rpm / 3})"));
                }
            }
            // What each edge counted: requests decided on its share (Redis down, or no answer within 1 s).
            for (var e = 0; e < 3; e++)
            {
                using var metrics = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePorts[e]}"), Timeout = TimeSpan.FromSeconds(10) };
                metrics.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", metricsKey);
                var text = await TryAsync(() => metrics.GetAsync("/metrics")) is { IsSuccessStatusCode: true } m ? await m.Content.ReadAsStringAsync() : "";
                var lines = text.Split('\n').Where(l => l.StartsWith("shoal_edge_gateway_limits_fallback_total", StringComparison.Ordinal)
                    || l.StartsWith("shoal_edge_gateway_limits_unanswered_total", StringComparison.Ordinal)
                    || l.StartsWith("shoal_edge_gateway_limits_shared", StringComparison.Ordinal) || l.StartsWith("shoal_edge_gateway_limits_edges", StringComparison.Ordinal));
                Console.WriteLine(Fmt($"- edge-{e + 1} metrics: {string.Join("; ", lines)}"));
            }
            var alive = processes.Where(p => p.Name.StartsWith("edge-", StringComparison.Ordinal)).Select(p => p.HasExited ? p.Name + " EXITED" : p.Name + " up");
            Console.WriteLine(Fmt($"- edges at the end: {string.Join(", ", alive)}"));
            foreach (var http in edges) http.Dispose();
            handler.Dispose();
        }
        finally
        {
            foreach (var p in Enumerable.Reverse(processes)) await p.DisposeAsync();
        }
    }

    /// <param name="Used">Prompt + completion tokens of the response's <c>usage</c> (-1: none).</param>
    private sealed record Ok(string RequestId, int Edge, long Sent, long Received, long Reserved, long Used);

    private static async Task CollectAsync(ConnectionMultiplexer redis, string keyId, ConcurrentDictionary<string, long> into, ConcurrentDictionary<string, long> settled)
    {
        try
        {
            var db = redis.GetDatabase();
            foreach (var entry in await db.SortedSetRangeByRankWithScoresAsync($"shoal:gw:k:{keyId}:r"))
            {
                into[entry.Element.ToString()] = (long)entry.Score;
            }
            foreach (var entry in await db.HashGetAllAsync($"shoal:gw:k:{keyId}:a"))
            {
                settled[entry.Name.ToString()] = (long)entry.Value;
            }
        }
        catch (RedisException)
        {
            // Killed: the outage's admissions are bounded from the clients' side.
        }
    }

    private static int MaxInWindow(long[] sorted)
    {
        var max = 0;
        for (int i = 0, j = 0; i < sorted.Length; i++)
        {
            while (j < sorted.Length && sorted[j] < sorted[i] + 60_000) j++;
            max = Math.Max(max, j - i);
        }
        return max;
    }

    private static long MaxSumInWindow((long At, long Tokens)[] sorted)
    {
        long max = 0, sum = 0;
        for (int i = 0, j = 0; i < sorted.Length; i++)
        {
            while (j < sorted.Length && sorted[j].At < sorted[i].At + 60_000) sum += Math.Max(0, sorted[j++].Tokens);
            max = Math.Max(max, sum);
            sum -= Math.Max(0, sorted[i].Tokens);
        }
        return max;
    }

    /// <summary>Prompt + completion tokens of the last <c>usage</c> in a response (a stream's final chunk), or -1.</summary>
    private static long Usage(string text)
    {
        var prompt = Regex.Matches(text, "\"prompt_tokens\":([0-9]+)");
        var completion = Regex.Matches(text, "\"completion_tokens\":([0-9]+)");
        if (prompt.Count == 0 || completion.Count == 0) return -1;
        return long.Parse(prompt[^1].Groups[1].Value, CultureInfo.InvariantCulture) + long.Parse(completion[^1].Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private static int CountWindowsOver(long[] sorted, int limit)
    {
        var over = 0;
        for (int i = 0, j = 0; i < sorted.Length; i++)
        {
            while (j < sorted.Length && sorted[j] < sorted[i] + 60_000) j++;
            if (j - i > limit) over++;
        }
        return over;
    }

    private static async Task<ApiKeyCreatedDto> CreateKeyAsync(HttpClient api, string name, GatewayLimits? limits)
    {
        var response = await api.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest { Name = name, Role = ApiKeyRoles.Endpoint, Project = "default", Limits = limits },
            ShoalJsonContext.Default.CreateApiKeyRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!;
    }

    private static async Task<HttpResponseMessage?> TryAsync(Func<Task<HttpResponseMessage>> call)
    {
        try
        {
            return await call();
        }
        catch (HttpRequestException)
        {
            return null;
        }
        catch (TaskCanceledException)
        {
            return null;
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > timeout) throw new TimeoutException("the benchmark's setup did not come up in time");
            await Task.Delay(200);
        }
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
