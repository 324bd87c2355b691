using System.Threading.Channels;

namespace Shoal.ControlPlane.Reconciliation;

/// <summary>A coalescing wake-up: any number of Set calls while the loop is busy wake it once.</summary>
internal sealed class Signal
{
    private readonly Channel<bool> _channel = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public void Set() => _channel.Writer.TryWrite(true);

    /// <summary>Waits until set or until <paramref name="timeout"/> passes; true when set.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken ct)
    {
        if (_channel.Reader.TryRead(out _)) return true;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var read = _channel.Reader.WaitToReadAsync(cts.Token).AsTask();
        var delay = Task.Delay(timeout, time, cts.Token);
        var first = await Task.WhenAny(read, delay);
        await cts.CancelAsync();
        ct.ThrowIfCancellationRequested();
        return first == read && _channel.Reader.TryRead(out _);
    }
}
