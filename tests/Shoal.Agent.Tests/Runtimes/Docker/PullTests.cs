using System.Net;
using Docker.DotNet.Models;
using Shoal.Agent.Runtimes.Docker;

namespace Shoal.Agent.Tests.Runtimes.Docker;

public class PullTests
{
    private static JSONMessage Layer(string id, string status, long current = 0, long total = 0) => new()
    {
        ID = id,
        Status = status,
        Progress = total > 0 ? new JSONProgress { Current = current, Total = total } : null,
    };

    [Fact]
    public void Progress_is_bytes_downloaded_over_bytes_to_download()
    {
        var tracker = new PullProgressTracker();
        tracker.Add(Layer("a", "Pulling fs layer"));
        tracker.Add(Layer("b", "Pulling fs layer"));
        Assert.Equal(0, tracker.Percent);

        // b's size is not known yet: it counts as big as the layers that are.
        Assert.Equal(10, tracker.Add(Layer("a", "Downloading", 200, 1000)));
        tracker.Add(Layer("b", "Downloading", 500, 3000));
        Assert.Equal(Math.Round(100.0 * 700 / 4000, 1), tracker.Percent);

        tracker.Add(Layer("a", "Pull complete"));
        Assert.Equal(Math.Round(100.0 * 1500 / 4000, 1), tracker.Percent);
        tracker.Add(Layer("b", "Download complete"));
        Assert.Equal(100, tracker.Percent);
        Assert.Null(tracker.Error);
    }

    [Fact]
    public void Layers_already_there_count_as_done_and_errors_are_kept()
    {
        var tracker = new PullProgressTracker();
        tracker.Add(Layer("a", "Already exists"));
        tracker.Add(Layer("b", "Downloading", 50, 100));
        Assert.Equal(75, tracker.Percent);

        Assert.Null(tracker.Add(new JSONMessage { Error = new JSONError { Message = "unauthorized: authentication required" } }));
        Assert.Equal("unauthorized: authentication required", tracker.Error);
    }

    [Theory]
    [InlineData("shoal/sim", "shoal/sim", "latest", null, "docker.io")]
    [InlineData("ghcr.io/org/model:1.2", "ghcr.io/org/model", "1.2", null, "ghcr.io")]
    [InlineData("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b", "t", null, "127.0.0.1:5000")]
    [InlineData("localhost:5000/a", "localhost:5000/a", "latest", null, "localhost:5000")]
    [InlineData("org/m@sha256:abcd", "org/m", null, "sha256:abcd", "docker.io")]
    [InlineData("org/m:1@sha256:abcd", "org/m", "1", "sha256:abcd", "docker.io")]
    public void References_split_into_repository_tag_and_digest(string reference, string repository, string? tag, string? digest, string registry)
    {
        var parsed = ImageReference.Parse(reference);

        Assert.Equal(repository, parsed.Repository);
        Assert.Equal(tag, parsed.Tag);
        Assert.Equal(digest, parsed.Digest);
        Assert.Equal(registry, parsed.Registry);
        Assert.Equal(digest ?? tag, parsed.PullTag);
    }

    [Theory]
    [InlineData("manifest for 127.0.0.1:5000/web:nosuchtag not found: manifest unknown: manifest unknown", "no such tag")]
    [InlineData("pull access denied for nope/nothing, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", "access denied")]
    [InlineData("repository 127.0.0.1:5000/nothing not found: name unknown: repository name not known to registry", "no such image")]
    [InlineData("Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host", "unreachable")]
    [InlineData("invalid reference format", "bad image reference")]
    public void Pull_failures_say_what_went_wrong(string engineMessage, string expected)
    {
        var reason = DockerRuntime.DescribePullFailure(ImageReference.Parse("127.0.0.1:5000/web:nosuchtag"), HttpStatusCode.InternalServerError, engineMessage);

        Assert.StartsWith("image pull failed: ", reason, StringComparison.Ordinal);
        Assert.Contains(expected, reason, StringComparison.Ordinal);
        Assert.EndsWith(engineMessage, reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pulled_image_is_pinned_by_its_repo_digest_and_a_local_one_by_its_id()
    {
        var digest = "sha256:" + new string('b', 64);
        var pulled = new ImageInspectResponse { ID = "sha256:" + new string('c', 64), RepoDigests = ["other/x@sha256:" + new string('d', 64), "ghcr.io/org/model@" + digest] };
        var local = new ImageInspectResponse { ID = "sha256:" + new string('e', 64), RepoDigests = [] };

        Assert.Equal("ghcr.io/org/model@" + digest, DockerRuntime.DigestOf(pulled, ImageReference.Parse("ghcr.io/org/model:1")));
        Assert.Equal("busybox@" + digest, DockerRuntime.DigestOf(new ImageInspectResponse { ID = "x", RepoDigests = ["busybox@" + digest] }, ImageReference.Parse("docker.io/library/busybox:1")));
        Assert.Equal(local.ID, DockerRuntime.DigestOf(local, ImageReference.Parse("shoal-test/web:1")));
    }
}
