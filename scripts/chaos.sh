#!/usr/bin/env bash
# Runs the chaos suite (tests/Shoal.Chaos.Tests: real server, agents and simulator replicas under
# steady load, then a fault: kill -9 of an agent with its replicas, of one replica, a frozen node, a
# node cut off the network for less and more than the grace, the server killed or stopped mid-deploy
# on SQLite and PostgreSQL, an agent restarted) RUNS times (default 3) and prints the median of every
# figure per scenario, the numbers in docs/reliability.md. Needs root (network namespaces, iptables)
# and PostgreSQL's binaries (scripts/test.sh installs them; or SHOAL_PG_BIN).
# A failed run still counts its figures (a failure is an assertion on them); the exit status says
# how many runs failed.
#   scripts/chaos.sh [RUNS]
# CHAOS_FILTER picks scenarios (default Category=Chaos: all), e.g.
#   CHAOS_FILTER=FullyQualifiedName~RolloutChaosTests scripts/chaos.sh 3
# Figures of each run are appended to artifacts/chaos/figures.jsonl (one JSON object per scenario run).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
runs="${1:-3}"
out_dir="$repo_root/artifacts/chaos"
mkdir -p "$out_dir"
figures="$out_dir/figures.jsonl"
: > "$figures"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Release by default, as a node would run it (the test suite runs Debug builds); CONFIGURATION=Debug to compare.
configuration="${CONFIGURATION:-Release}"
dotnet build tests/Shoal.Chaos.Tests -c "$configuration" -v q
failures=0
for i in $(seq 1 "$runs"); do
    echo "run $i of $runs"
    SHOAL_CHAOS_FIGURES="$figures" dotnet test tests/Shoal.Chaos.Tests --no-build -c "$configuration" --filter "${CHAOS_FILTER:-Category=Chaos}" \
        --logger "console;verbosity=normal" || failures=$((failures + 1))
done

python3 - "$figures" <<'PY'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    scenario = row.pop("scenario")
    for k, v in row.items():
        by.setdefault(scenario, {}).setdefault(k, []).append(v)
for scenario, figures in by.items():
    print(f"{scenario} ({len(next(iter(figures.values())))} runs): median [min..max]")
    for k, values in figures.items():
        print(f"  {k:24} {statistics.median(values):>10.1f}  [{min(values):.1f} .. {max(values):.1f}]")
PY
if [ "$failures" -gt 0 ]; then
    echo "$failures of $runs runs failed" >&2
    exit 1
fi
