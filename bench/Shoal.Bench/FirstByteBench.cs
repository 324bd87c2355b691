using System.Diagnostics;
using System.Globalization;

namespace Shoal.Bench;

/// <summary>
/// What the hung-replica cuts add to each attempt on the edge's request path, side by side in one
/// run: the linked cancellation source every attempt already had (baseline), plus the per-attempt
/// guard and its registration on the replica's "left routing" token (every attempt), plus the
/// first-byte timer (attempts with a cap). The same primitives <c>EdgeProxy</c> uses, on
/// <see cref="TimeProvider.System"/>; threads share one replica token, as concurrent requests to
/// one replica do. Rounds alternate the variants; figures are ns per attempt (median and p99 of
/// batches of 1,000).
/// </summary>
internal static class FirstByteBench
{
    private const int Batch = 1_000;

    public static void Run(int rounds, int threads)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"## Edge: per-attempt cost of the hung-replica cuts ({threads} thread(s), {rounds} alternated rounds of 1,000,000 attempts per variant)"));
        using var client = new CancellationTokenSource();
        using var lost = new CancellationTokenSource();
        using var departed = new CancellationTokenSource();
        string[] names = ["before (linked source only)", "+ guard and left-routing registration", "+ first-byte timer (cap set)"];
        var batches = names.Select(_ => new List<double>()).ToArray();
        for (var round = -1; round < rounds; round++)
        {
            for (var v = 0; v < names.Length; v++)
            {
                var variant = v;
                var perThread = new List<double>[threads];
                var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
                {
                    var list = perThread[t] = new List<double>(1_000_000 / Batch / threads + 1);
                    for (var b = 0; b < 1_000_000 / Batch / threads; b++)
                    {
                        var start = Stopwatch.GetTimestamp();
                        for (var i = 0; i < Batch; i++) Attempt(variant, client.Token, lost.Token, departed.Token);
                        list.Add(Stopwatch.GetElapsedTime(start).TotalNanoseconds / Batch);
                    }
                })).ToList();
                workers.ForEach(w => w.Start());
                workers.ForEach(w => w.Join());
                if (round >= 0) batches[variant].AddRange(perThread.SelectMany(l => l)); // round -1 warms up (JIT tiering)
            }
        }
        Console.WriteLine("| variant | ns/attempt median | p99 | vs before |");
        Console.WriteLine("|---|---:|---:|---:|");
        var before = Percentile(batches[0], 50);
        for (var v = 0; v < names.Length; v++)
        {
            var median = Percentile(batches[v], 50);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {names[v]} | {median:F0} | {Percentile(batches[v], 99):F0} | +{median - before:F0} ns |"));
        }
    }

    private static void Attempt(int variant, CancellationToken client, CancellationToken lost, CancellationToken departed)
    {
        var cut = CancellationTokenSource.CreateLinkedTokenSource(client, lost);
        if (variant >= 1)
        {
            var guard = new Guard(cut);
            var registration = departed.UnsafeRegister(s_cut, guard);
            var timer = variant == 2 ? TimeProvider.System.CreateTimer(s_timer, guard, TimeSpan.FromSeconds(10), Timeout.InfiniteTimeSpan) : null;
            timer?.Dispose();
            registration.Dispose();
        }
        cut.Dispose();
    }

    private static readonly Action<object?> s_cut = static s => ((Guard)s!).Cut();
    private static readonly TimerCallback s_timer = static s => ((Guard)s!).Cut();

    private sealed class Guard(CancellationTokenSource cut)
    {
        private int _state;

        public void Cut()
        {
            if (Interlocked.CompareExchange(ref _state, 1, 0) == 0) cut.Cancel();
        }
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)];
    }
}
