using Microsoft.Extensions.Primitives;
using Shoal.Contracts;

namespace Shoal.Core.Routing;

/// <summary>Where the edge reads its route table from.</summary>
public interface IRouteTableSource
{
    RouteTable Current { get; }

    /// <summary>Fires when <see cref="Current"/> has been replaced.</summary>
    IChangeToken GetChangeToken();
}

/// <summary>
/// Holds the current route table: writers build a new immutable table and swap it in;
/// readers never lock. In <c>shoal server</c> the control plane writes it in-process.
/// </summary>
public sealed class RouteTableHolder : IRouteTableSource
{
    private volatile RouteTable _current = RouteTable.Empty;
    private CancellationTokenSource _changed = new();

    public RouteTable Current => _current;

    public IChangeToken GetChangeToken() => new CancellationChangeToken(_changed.Token);

    public void Update(RouteTable table)
    {
        _current = table;
        var previous = Interlocked.Exchange(ref _changed, new CancellationTokenSource());
        previous.Cancel();
        previous.Dispose();
    }
}
