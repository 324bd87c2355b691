using System.Globalization;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

public sealed class RequestIdsTests
{
    [Fact]
    public void Ids_are_version_7_uuids_after_req_with_the_time_given_and_none_repeats_across_refills()
    {
        var at = new DateTimeOffset(2026, 12, 5, 12, 0, 0, 123, TimeSpan.Zero);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < RequestIds.IdsPerFill * 3 + 7; i++)
        {
            var id = RequestIds.New(at);
            Assert.Equal(36, id.Length);
            Assert.StartsWith("req_", id, StringComparison.Ordinal);
            Assert.Matches("^req_[0-9a-f]{32}$", id);
            var guid = Guid.ParseExact(id[4..], "N");
            Assert.Equal(7, guid.Version);
            Assert.Contains(id[20], "89ab");
            // The first 48 bits are the Unix milliseconds, as Guid.CreateVersion7 writes them.
            Assert.Equal(at.ToUnixTimeMilliseconds(), long.Parse(id[4..16], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            Assert.True(seen.Add(id), $"repeated id {id}");
        }
    }

    [Fact]
    public async Task Ids_made_on_many_threads_at_once_do_not_repeat()
    {
        var at = DateTimeOffset.UtcNow;
        var ids = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => Enumerable.Range(0, 2000).Select(_ => RequestIds.New(at)).ToArray())));
        var all = ids.SelectMany(x => x).ToArray();
        Assert.Equal(all.Length, all.Distinct(StringComparer.Ordinal).Count());
    }
}
