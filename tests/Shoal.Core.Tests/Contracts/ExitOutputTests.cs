using Shoal.Contracts;

namespace Shoal.Core.Tests.Contracts;

public sealed class ExitOutputTests
{
    [Fact]
    public void The_last_lines_are_kept_cleaned_and_bracketed()
    {
        var output = "starting\nloading weights\n\n\u001b[31mfatal: [cuda] no device\u001b[0m\r\nbye\n";
        Assert.Equal("; last output: [loading weights | (31mfatal: (cuda) no device (0m | bye]", ExitOutput.Format(output));
        Assert.Equal("", ExitOutput.Format(null));
        Assert.Equal("", ExitOutput.Format(" \n \n"));
    }

    [Fact]
    public void Long_output_is_cut_from_the_front()
    {
        var text = ExitOutput.Format(new string('x', 1000));
        Assert.Equal("; last output: [".Length + ExitOutput.MaxChars + 1, text.Length);
        Assert.StartsWith("; last output: […xxx", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Strip_removes_the_output_wherever_it_sits_in_a_reason()
    {
        var reason = "2 attempts failed before any replica was ready; last: crash-looping on n1 (2 restarts within 300 s; last: exited with code 3"
            + ExitOutput.Format("fatal: secret=hunter2") + "; restarting in 2 s)";
        Assert.Equal("2 attempts failed before any replica was ready; last: crash-looping on n1 (2 restarts within 300 s; last: exited with code 3; restarting in 2 s)", ExitOutput.Strip(reason));
        Assert.Equal("image pull failed: no such tag", ExitOutput.Strip("image pull failed: no such tag"));
    }
}
