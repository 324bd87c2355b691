using System.Globalization;
using Shoal.Contracts;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Shoal.Cli.Interaction;

/// <summary>The tables and summaries the client commands print.</summary>
public static class Views
{
    public static Table Clusters(IEnumerable<ClusterDto> clusters)
    {
        var table = NewTable("NAME", "IMAGE", "GPU", "READY", "GENERATION", "ENDPOINT");
        foreach (var c in clusters)
        {
            table.AddRow(
                Cell(c.Name),
                Cell(c.Image),
                Cell(Formats.ClusterGpu(c)),
                ReadyCell(c.ReadyReplicas, c.Replicas),
                Cell(c.Generation.ToString(CultureInfo.InvariantCulture)),
                Cell(c.Endpoint));
        }

        return table;
    }

    /// <summary>The cluster header of <c>shoal status</c>.</summary>
    public static Grid ClusterSummary(ClusterDto c, int readyReplicas)
    {
        var grid = new Grid().AddColumn(new GridColumn().NoWrap()).AddColumn();
        void Row(string label, IRenderable value) => grid.AddRow(new Markup($"[bold]{label}[/]"), value);
        Row("cluster", Cell(c.Name));
        Row("image", Cell(c.Image));
        if (c.ImageDigest is { } digest)
        {
            Row("pinned", Cell(digest));
        }
        if (c.RegistryUser is { } user)
        {
            Row("registry user", Cell(user));
        }
        Row("gpu", Cell(Formats.ClusterGpu(c)));
        Row("replicas", ReadyCell(readyReplicas, c.Replicas, " ready"));
        if (c.Autoscale is { } autoscale)
        {
            Row("autoscale", Cell(AutoscaleSettings(autoscale.Settings)));
            Row("decision", Cell(AutoscaleDecision(autoscale)));
            if (autoscale.LastChange is { } change)
            {
                Row("last change", Cell(change + (autoscale.LastChangeAt is { } at ? " at " + at.UtcDateTime.ToString("HH:mm:ss", CultureInfo.InvariantCulture) + " UTC" : "")));
            }
        }
        if (c.ColdStart is { } coldStart)
        {
            Row("cold start", Cell(ColdStart(coldStart)));
        }
        if (c.Failure is { } failure)
        {
            Row("failed", new Markup($"[red]{Markup.Escape(failure)}[/]"));
        }
        else if (c.FailedAttempts > 0)
        {
            Row("failed attempts", new Markup(string.Create(CultureInfo.InvariantCulture, $"[yellow]{c.FailedAttempts}[/] (replicas that failed before the spec ever worked)")));
        }
        Row("generation", Cell(c.Generation.ToString(CultureInfo.InvariantCulture)));
        if (c.Rollout is { } rollout)
        {
            var color = rollout.State switch
            {
                RolloutStates.Complete => "green",
                RolloutStates.RolledBack => "red",
                _ => "yellow",
            };
            Row("rollout", new Markup($"[{color}]{Markup.Escape(rollout.State)}[/]{Markup.Escape(RolloutDetail(rollout))}"));
        }
        Row("port", Cell(c.Port.ToString(CultureInfo.InvariantCulture)));
        Row("health", Cell(c.Health.Path));
        if (c.Price is { } price)
        {
            Row("price", Cell(Formats.Price(price)));
        }
        Row("endpoint", Cell(c.Endpoint));
        Row("models", Cell(c.Models.Length == 0
            ? (c.ModelsDeclared ? "-" : "none reported yet (from its replicas' /v1/models)")
            : string.Join(", ", c.Models) + (c.ModelsDeclared ? "" : " (from its replicas)")));
        return grid;
    }

    /// <summary>"1..5 replicas, target 2 waiting per replica, scale-down window 5m, to zero after 10m idle".</summary>
    public static string AutoscaleSettings(AutoscaleSpec a)
    {
        ArgumentNullException.ThrowIfNull(a);
        var targets = new List<string>();
        if (a.TargetWaiting > 0) targets.Add(string.Create(CultureInfo.InvariantCulture, $"{a.TargetWaiting:0.##} waiting"));
        if (a.TargetConcurrency > 0) targets.Add(string.Create(CultureInfo.InvariantCulture, $"{a.TargetConcurrency:0.##} in flight + held"));
        var text = string.Create(CultureInfo.InvariantCulture,
            $"{a.Min}..{a.Max} replicas, target {string.Join(" and ", targets)} per replica, scale-down window {Shoal.Core.Autoscaling.Autoscaler.Format(TimeSpan.FromSeconds(a.ScaleDownWindowSeconds))}");
        if (a.ScaleToZeroAfterSeconds > 0) text += $", to zero after {Shoal.Core.Autoscaling.Autoscaler.Format(TimeSpan.FromSeconds(a.ScaleToZeroAfterSeconds))} idle";
        return text;
    }

    /// <summary>"wants 5: 14 waiting per replica, target 2 (28 waiting, 30 in flight, 0 held)", or that it has not decided yet.</summary>
    public static string AutoscaleDecision(AutoscaleDto a)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (a.Desired is not { } desired) return "none yet (the autoscaler decides every second)";
        return string.Create(CultureInfo.InvariantCulture,
            $"wants {desired}: {a.Reason} ({a.Waiting:0.#} waiting, {a.InFlight} in flight, {a.Held} held)");
    }

    /// <summary>"node p50 0.1s p90 0.2s max 0.3s · pull … · start … · warm-up …" over the recent replicas.</summary>
    public static string ColdStart(ColdStartDto c)
    {
        ArgumentNullException.ThrowIfNull(c);
        static string Part(string name, LatencySummary? s) => s is null ? $"{name} -" : string.Create(CultureInfo.InvariantCulture,
            $"{name} p50 {Ms(s.P50Ms)} p90 {Ms(s.P90Ms)} max {Ms(s.MaxMs)} ({s.Count})");
        static string Ms(double ms) => ms < 1000 ? string.Create(CultureInfo.InvariantCulture, $"{ms:0}ms") : string.Create(CultureInfo.InvariantCulture, $"{ms / 1000:0.0#}s");
        return string.Join(" · ", Part("node", c.NodeWait), Part("pull", c.ImagePull), Part("start", c.Start), Part("warm-up", c.WarmUp));
    }

    /// <summary>The replica table of <c>shoal status</c>, with the cold-start parts.</summary>
    public static Table Replicas(IEnumerable<ReplicaDto> replicas)
    {
        var table = NewTable("ID", "NODE", "GPUS", "STATE", "HEALTHY", "REASON", "RESTARTS", "WAIT FOR NODE", "PULL", "START TO READY");
        foreach (var r in replicas)
        {
            table.AddRow(
                Cell(r.Id),
                Cell(r.NodeName ?? r.Node ?? "-"),
                Cell(r.Gpus.Length == 0 ? "-" : string.Join(',', r.Gpus)),
                StateCell(r.State, r.PullProgress),
                Cell(r.Healthy ? "yes" : "no"),
                Cell(r.Reason ?? "-"),
                Cell(r.Restarts.ToString(CultureInfo.InvariantCulture)),
                Cell(Formats.Between(r.CreatedAt, r.AssignedAt)),
                Cell(Formats.Between(r.AssignedAt, r.PulledAt)),
                Cell(Formats.Between(r.StartedAt, r.ReadyAt)));
        }

        return table;
    }

    /// <summary>"rolling out generation 2 (image a → b): 1 updated, 1 outdated, 1 draining" or where the last update ended.</summary>
    public static string RolloutSummary(ClusterDto c)
    {
        if (c.Rollout is not { } rollout)
        {
            return string.Create(CultureInfo.InvariantCulture, $"generation {c.Generation}");
        }

        var what = rollout.State switch
        {
            RolloutStates.Progressing => "rolling out",
            RolloutStates.RolledBack => "rolled back to",
            _ => "complete:",
        };
        return string.Create(CultureInfo.InvariantCulture, $"{what} generation {rollout.Generation}{RolloutDetail(rollout)}");
    }

    private static string RolloutDetail(RolloutDto rollout)
    {
        var reason = rollout.Reason is { Length: > 0 } r ? $" ({r})" : "";
        return rollout.State == RolloutStates.Progressing || rollout.DrainingReplicas > 0
            ? string.Create(CultureInfo.InvariantCulture,
                $"{reason}: {rollout.UpdatedReplicas} updated, {rollout.OutdatedReplicas} outdated, {rollout.DrainingReplicas} draining")
            : reason;
    }

    public static IRenderable ClusterStatus(ClusterStatusDto status) =>
        new Rows(
            ClusterSummary(status.Cluster, CountReady(status)),
            new Text(""),
            status.Replicas.Length == 0 ? new Markup("[grey]no replicas[/]") : Replicas(status.Replicas));

    public static Table Nodes(IEnumerable<NodeDto> nodes, DateTimeOffset now)
    {
        var table = NewTable("ID", "NAME", "STATE", "GPUS", "FREE GPUS", "REPLICAS", "LABELS", "RELIABILITY", "LAST SEEN");
        foreach (var n in nodes)
        {
            var state = n.State.ToWire() + (n.Cordoned && n.State is not (NodeState.Cordoned or NodeState.Draining) ? ", cordoned" : "");
            if (n.Pending) state = "pending approval, " + state;
            if (n.AddressRefused is not null) state += ", address refused";
            table.AddRow(
                Cell(n.Id),
                Cell(n.Name),
                new Markup(Markup.Escape(state),
                    n.State == NodeState.Ready && !n.Cordoned && !n.Pending && n.AddressRefused is null ? new Style(Color.Green) : new Style(Color.Yellow)),
                Cell(Formats.Gpus(n.Hardware)),
                Cell(n.FreeGpus.ToString(CultureInfo.InvariantCulture)),
                Cell(n.Replicas.ToString(CultureInfo.InvariantCulture)),
                Cell(n.Labels.Length == 0 ? "-" : string.Join(",", n.Labels)),
                Reliability(n),
                Cell(Formats.Age(n.LastSeenAt, now)));
        }

        return table;
    }

    /// <summary>The node's reliability score, with its disconnects of the last 10 minutes; a flapping node in red.</summary>
    private static Markup Reliability(NodeDto n)
    {
        var text = n.Reliability.ToString("0.00", CultureInfo.InvariantCulture);
        if (n.Flapping) text += " flapping";
        if (n.RecentDisconnects > 0) text += n.RecentDisconnects == 1 ? " (1 drop)" : $" ({n.RecentDisconnects.ToString(CultureInfo.InvariantCulture)} drops)";
        return new Markup(Markup.Escape(text), n.Flapping ? new Style(Color.Red) : n.RecentDisconnects > 0 ? new Style(Color.Yellow) : Style.Plain);
    }

    /// <summary>The table of <c>shoal events</c>: times in UTC to the millisecond, so failover steps can be timed.</summary>
    public static Table Events(IEnumerable<ClusterEventDto> events)
    {
        var table = NewTable("TIME (UTC)", "TYPE", "REPLICA", "NODE", "MESSAGE");
        foreach (var e in events)
        {
            var color = e.Type switch
            {
                ClusterEventTypes.Ready or ClusterEventTypes.NodeBack or ClusterEventTypes.UpdateCompleted => Color.Green,
                ClusterEventTypes.Failed or ClusterEventTypes.Unhealthy or ClusterEventTypes.NodeLost or ClusterEventTypes.RolledBack or ClusterEventTypes.Unroutable => Color.Red,
                ClusterEventTypes.Replaced or ClusterEventTypes.Restarted or ClusterEventTypes.Pending or ClusterEventTypes.Draining => Color.Yellow,
                _ => Color.Default,
            };
            table.AddRow(
                Cell(e.At.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)),
                new Markup(Markup.Escape(e.Type), new Style(color)),
                Cell(e.Replica ?? "-"),
                Cell(e.NodeName ?? e.Node ?? "-"),
                Cell(e.Message));
        }

        return table;
    }

    /// <summary>The table of <c>shoal keys list</c> (never the keys themselves: their first characters).</summary>
    public static Table Keys(IEnumerable<ApiKeyDto> keys, DateTimeOffset now)
    {
        var table = NewTable("ID", "NAME", "ROLE", "PROJECT", "PREFIX", "RATE LIMIT", "GATEWAY", "EXPIRES (UTC)", "STATE");
        foreach (var k in keys)
        {
            var state = k.RevokedAt is not null ? "revoked" : k.ExpiresAt is { } e && e <= now ? "expired" : "active";
            table.AddRow(
                Cell(k.Id), Cell(k.Name), Cell(k.Role), Cell(k.Project ?? "-"), Cell(k.Prefix + "…"),
                Cell(k.RateLimitPerMinute is { } r ? r.ToString(CultureInfo.InvariantCulture) + "/min" : "default"),
                Cell(Commands.GatewaySettingsOptions.Describe(k.Limits, k.Budget)),
                Cell(k.ExpiresAt?.UtcDateTime.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture) ?? "never"),
                Cell(state));
        }
        return table;
    }

    /// <summary>The table of <c>shoal tokens list</c>.</summary>
    public static Table Tokens(IEnumerable<TokenDto> tokens, DateTimeOffset now)
    {
        var table = NewTable("ID", "DESCRIPTION", "USES", "EXPIRES (UTC)", "STATE");
        foreach (var t in tokens)
        {
            var state = t.RevokedAt is not null ? "revoked" : t.ExpiresAt <= now ? "expired" : t.Uses >= t.MaxUses ? "used up" : "active";
            table.AddRow(
                Cell(t.Id), Cell(t.Description ?? "-"),
                Cell(string.Create(CultureInfo.InvariantCulture, $"{t.Uses}/{t.MaxUses}")),
                Cell(t.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)),
                Cell(state));
        }
        return table;
    }

    public static Table GpuTypes(IEnumerable<GpuTypeDto> types)
    {
        var table = NewTable("TYPE", "NAME", "MEMORY", "TOTAL", "FREE");
        foreach (var t in types)
        {
            table.AddRow(
                Cell(t.Type),
                Cell(t.DisplayName),
                Cell(Formats.MemoryMiB(t.MemoryMiB)),
                Cell(t.Total.ToString(CultureInfo.InvariantCulture)),
                Cell(t.Free.ToString(CultureInfo.InvariantCulture)));
        }

        return table;
    }

    /// <summary>The live view of <c>deploy --wait</c>: replicas ready x/N and each replica's state.</summary>
    public static IRenderable DeployProgress(ClusterStatusDto status)
    {
        var table = NewTable("ID", "NODE", "STATE", "REASON");
        foreach (var r in status.Replicas)
        {
            table.AddRow(Cell(r.Id), Cell(r.NodeName ?? r.Node ?? "-"), StateCell(r.State), Cell(r.Reason ?? "-"));
        }

        return new Rows(new Text(ProgressSummary(status)), table);
    }

    /// <summary>One line: "1/3 replicas ready (1 pulling, 1 pending)".</summary>
    public static string ProgressSummary(ClusterStatusDto status)
    {
        var ready = CountReady(status);
        var others = status.Replicas
            .Where(r => r.State != ReplicaState.Ready)
            .GroupBy(r => r.State)
            .OrderBy(g => g.Key)
            .Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Count()} {g.Key.ToWire()}"))
            .ToList();
        var missing = status.Cluster.Replicas - status.Replicas.Length;
        if (missing > 0)
        {
            others.Add(string.Create(CultureInfo.InvariantCulture, $"{missing} not created yet"));
        }

        var line = string.Create(CultureInfo.InvariantCulture, $"{ready}/{status.Cluster.Replicas} replicas ready");
        return others.Count == 0 ? line : $"{line} ({string.Join(", ", others)})";
    }

    public static int CountReady(ClusterStatusDto status) => status.Replicas.Count(r => r.State == ReplicaState.Ready);

    private static Table NewTable(params string[] headers)
    {
        var table = new Table().Border(TableBorder.Simple);
        foreach (var header in headers)
        {
            table.AddColumn(new TableColumn(new Text(header, new Style(decoration: Decoration.Bold))));
        }

        return table;
    }

    private static Text Cell(string value) => new(value);

    private static Markup ReadyCell(int ready, int desired, string suffix = "")
    {
        var color = ready >= desired ? "green" : ready == 0 && desired > 0 ? "red" : "yellow";
        return new Markup(string.Create(CultureInfo.InvariantCulture, $"[{color}]{ready}/{desired}[/]{Markup.Escape(suffix)}"));
    }

    private static Markup StateCell(ReplicaState state, double? pullProgress = null)
    {
        if (state == ReplicaState.Pulling && pullProgress is { } percent)
        {
            return new Markup(string.Create(CultureInfo.InvariantCulture, $"pulling {percent:0}%"), new Style(Color.Yellow));
        }
        var color = state switch
        {
            ReplicaState.Ready => Color.Green,
            ReplicaState.Failed or ReplicaState.Unhealthy or ReplicaState.Unreachable => Color.Red,
            ReplicaState.Stopped or ReplicaState.Draining => Color.Grey,
            _ => Color.Yellow,
        };
        return new Markup(state.ToWire(), new Style(color));
    }
}
