using System.Formats.Tar;
using System.Text;
using Docker.DotNet;
using Docker.DotNet.Models;
using Shoal.Agent.Runtimes;
using Shoal.Agent.Runtimes.Docker;

namespace Shoal.Docker.Tests;

/// <summary>
/// The real Docker engine the tests drive, and the small test images (busybox httpd answering
/// <c>/health</c> on <c>$PORT</c>, and one that prints two lines and exits with code 3), imported
/// once per run from the host's static busybox and removed at the end. Everything the tests create
/// carries <see cref="TestLabel"/>.
/// </summary>
public sealed class DockerEngine : IAsyncLifetime
{
    /// <summary>Marks containers and images the tests themselves create.</summary>
    public const string TestLabel = "io.shoal.test";

    public const string WebImage = "shoal-test/web:1";

    /// <summary>Exits at once with code 3 after two lines (one on stdout, one on stderr), as a model server missing its weights.</summary>
    public const string CrashImage = "shoal-test/crash:1";

    private static readonly string[] s_busyboxCandidates = ["/bin/busybox", "/usr/bin/busybox"];

    public IDockerClient Client { get; } = DockerRuntime.CreateClient(null);

    /// <summary>The image id of <see cref="WebImage"/>, which is what a local image is pinned to.</summary>
    public string WebImageId { get; private set; } = "";

    public async Task InitializeAsync()
    {
        var version = await DockerRuntime.ProbeAsync(Client, TimeSpan.FromSeconds(10), CancellationToken.None)
            ?? throw new InvalidOperationException("no Docker engine answers on the default socket; scripts/test.sh installs and starts one (as root)");
        _ = version;
        WebImageId = await ImportImagesAsync();
    }

    // `docker import` of a tiny root file system: faster than a build, and needs no base image.
    private async Task<string> ImportImagesAsync()
    {
        var busybox = s_busyboxCandidates.FirstOrDefault(IsStatic)
            ?? throw new InvalidOperationException("a static busybox is needed to build the test image: apt-get install busybox-static");
        using var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            await writer.WriteEntryAsync(busybox, "bin/busybox");
            foreach (var applet in (string[])["sh", "httpd", "echo", "sleep", "cat"])
            {
                await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.SymbolicLink, "bin/" + applet) { LinkName = "busybox", Mode = (UnixFileMode)0x1ff });
            }
            AddFile(writer, "www/health", "ok\n", 0x1a4);
            AddFile(writer, "www/index.html", "hello from shoal-test/web\n", 0x1a4);
            // Honours PORT like a real inference server; says so on stdout for the logs test.
            AddFile(writer, "serve", "#!/bin/sh\necho \"serving on ${PORT:-8000}\"\nexec httpd -f -v -p 127.0.0.1:${PORT:-8000} -h /www\n", 0x1ed);
            AddFile(writer, "crash", "#!/bin/sh\necho \"loading weights from /models/demo\"\necho \"fatal: /models/demo/config.json not found\" >&2\nexit 3\n", 0x1ed);
            await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.Directory, "tmp") { Mode = (UnixFileMode)0x3ff });
        }
        // The engine closes the stream it is given: each import reads its own.
        var rootfs = tar.ToArray();
        foreach (var (name, entrypoint) in new[] { (WebImage, "/serve"), (CrashImage, "/crash") })
        {
            using var source = new MemoryStream(rootfs);
            var (repo, tag) = (name[..name.IndexOf(':', StringComparison.Ordinal)], name[(name.IndexOf(':', StringComparison.Ordinal) + 1)..]);
            await Client.Images.CreateImageAsync(
                new ImagesCreateParameters
                {
                    FromSrc = "-",
                    Repo = repo,
                    Tag = tag,
                    Changes = [$"ENTRYPOINT [\"{entrypoint}\"]", $"LABEL {TestLabel}=true"],
                },
                source,
                new AuthConfig(),
                new Progress<JSONMessage>(),
                CancellationToken.None);
        }
        var image = await Client.Images.InspectImageAsync(WebImage);
        return image.ID;
    }

    // A scratch image has no dynamic loader: only a statically linked busybox runs in it.
    private static bool IsStatic(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }
        using var file = File.OpenRead(path);
        var head = new byte[Math.Min(4096, file.Length)];
        file.ReadExactly(head);
        return head.AsSpan().IndexOf("/ld-linux"u8) < 0 && head.AsSpan().IndexOf("/ld-musl"u8) < 0;
    }

    private static void AddFile(TarWriter writer, string name, string content, int mode)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            Mode = (UnixFileMode)mode,
            DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)),
        };
        writer.WriteEntry(entry);
    }

    /// <summary>Containers labelled with this node, running or not.</summary>
    public async Task<IList<ContainerListResponse>> NodeContainersAsync(string nodeId) =>
        await Client.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = new Dictionary<string, IDictionary<string, bool>>
            {
                ["label"] = new Dictionary<string, bool> { [$"{DockerLabels.Node}={nodeId}"] = true },
            },
        });

    /// <summary>Starts a container the agent must never touch (no Shoal ownership labels of its node).</summary>
    public async Task<string> StartForeignContainerAsync(string name, IDictionary<string, string> labels)
    {
        var all = new Dictionary<string, string>(labels) { [TestLabel] = "true" };
        var created = await Client.Containers.CreateContainerAsync(new CreateContainerParameters
        {
            Name = name,
            Image = WebImage,
            Labels = all,
            Env = [$"PORT={ProcessRuntime.FreeLoopbackPort()}"],
            HostConfig = new HostConfig { NetworkMode = "host", CapDrop = ["ALL"] },
        });
        await Client.Containers.StartContainerAsync(created.ID, new ContainerStartParameters());
        return created.ID;
    }

    /// <summary>Removes every container of this node and every container the tests made.</summary>
    public async Task CleanUpAsync(string? nodeId)
    {
        var filters = new List<string> { $"{TestLabel}=true" };
        if (nodeId is not null)
        {
            filters.Add($"{DockerLabels.Node}={nodeId}");
        }
        foreach (var filter in filters)
        {
            var list = await Client.Containers.ListContainersAsync(new ContainersListParameters
            {
                All = true,
                Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { [filter] = true } },
            });
            foreach (var c in list)
            {
                try
                {
                    await Client.Containers.RemoveContainerAsync(c.ID, new ContainerRemoveParameters { Force = true });
                }
                catch (DockerContainerNotFoundException)
                {
                }
            }
        }
    }

    public async Task DisposeAsync()
    {
        await CleanUpAsync(null);
        foreach (var image in (string[])[WebImage, CrashImage])
        {
            try
            {
                await Client.Images.DeleteImageAsync(image, new ImageDeleteParameters { Force = true });
            }
            catch (DockerImageNotFoundException)
            {
            }
        }
        Client.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class DockerCollection : ICollectionFixture<DockerEngine>
{
    public const string Name = "docker";
}
