#!/usr/bin/env bash
# Builds the solution once and runs every test project, PostgreSQL tests included (their server
# binaries are installed with apt when missing and we are root; the tests start their own server),
# and Docker tests included: Debian's docker.io (and busybox-static, for the test image) are
# installed when missing and we are root, and dockerd is started with --bridge=none when no engine
# answers; a dockerd started here is stopped at the end.
# Extra arguments go to `dotnet test`, e.g.:
#   scripts/test.sh --filter "Category!=Postgres&Category!=EndToEnd&Category!=Docker"
# The last line printed is always "Tests: N passed, N failed" (", N skipped" when some were).
# SHOAL_TEST_TARGET names one project (or another solution) to build and test instead of Shoal.slnx.
# Exit status: non-zero when the build fails, a test fails, or no test ran.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
results_dir="$repo_root/artifacts/test-results"
target="${SHOAL_TEST_TARGET:-Shoal.slnx}"

summary() { # passed failed skipped
    local line="Tests: $1 passed, $2 failed"
    if [ "$3" -gt 0 ]; then
        line="$line, $3 skipped"
    fi
    echo "$line"
}

# Same search as tests/Shoal.Testing/PostgresServer.cs: $SHOAL_PG_BIN, PATH, /usr/local/bin,
# then the highest /usr/lib/postgresql/*/bin (where Debian puts them).
find_pg_bin() {
    local candidates=() path_dirs=() dir
    if [ -n "${SHOAL_PG_BIN:-}" ]; then
        candidates+=("$SHOAL_PG_BIN")
    fi
    IFS=: read -r -a path_dirs <<< "${PATH:-}"
    candidates+=("${path_dirs[@]}" /usr/local/bin)
    while IFS= read -r dir; do
        candidates+=("$dir")
    done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
    for dir in "${candidates[@]}"; do
        if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    echo "PostgreSQL server binaries not found; installing them with apt-get."
    export DEBIAN_FRONTEND=noninteractive
    # Binaries only: no main cluster, and no service started; the tests run their own server.
    mkdir -p /etc/postgresql-common
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    local added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    local rc=0
    apt-get update && apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold postgresql || rc=$?
    if [ "$added_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    return "$rc"
}

is_root=0
if [ "$(id -u)" -eq 0 ]; then
    is_root=1
fi

if pg_bin="$(find_pg_bin)"; then
    echo "PostgreSQL binaries: $pg_bin"
elif [ "$is_root" -eq 1 ]; then
    if ! install_postgres || ! pg_bin="$(find_pg_bin)"; then
        echo "error: could not install the PostgreSQL server binaries" >&2
        summary 0 1 0
        exit 1
    fi
    echo "PostgreSQL binaries: $pg_bin"
else
    echo "warning: PostgreSQL server binaries not found and not root, so not installing them;" \
        "the PostgreSQL tests will fail (install the 'postgresql' package or set SHOAL_PG_BIN)." >&2
fi

# Redis for the gateway's shared counters (tests start their own redis-server on a loopback port).
if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server: $(command -v redis-server)"
elif [ "$is_root" -eq 1 ]; then
    # policy-rc.d keeps Debian's package from starting a system redis on port 6379.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; } \
        || echo "warning: could not install redis-server; the gateway's Redis tests will fail" >&2
    [ "$added_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
else
    echo "warning: redis-server not found and not root, so not installing it; the gateway's Redis tests will fail." >&2
fi

docker_pid=""
docker_started_here=0
stop_docker() {
    if [ "$docker_started_here" -eq 1 ] && [ -n "$docker_pid" ]; then
        kill "$docker_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$docker_pid" 2>/dev/null || break
            sleep 0.2
        done
        docker_started_here=0
    fi
}
trap stop_docker EXIT

docker_answers() {
    command -v docker > /dev/null 2>&1 && timeout 10 docker version > /dev/null 2>&1
}

# The Docker tests need an engine (no bridge network: every container uses host networking and
# only loopback) and a static busybox to build their image from.
if ! docker_answers; then
    if [ "$is_root" -eq 1 ]; then
        if ! command -v dockerd > /dev/null 2>&1 || ! dpkg -s busybox-static > /dev/null 2>&1; then
            echo "Docker engine or busybox-static missing; installing them with apt-get."
            export DEBIAN_FRONTEND=noninteractive
            apt-get update && apt-get install -y --no-install-recommends docker.io busybox-static \
                || echo "warning: could not install docker.io; the Docker tests will fail" >&2
        fi
        if command -v dockerd > /dev/null 2>&1; then
            mkdir -p "$repo_root/artifacts"
            echo "Starting dockerd --bridge=none (stopped when the tests end)."
            dockerd --bridge=none --iptables=false --ip6tables=false > "$repo_root/artifacts/dockerd.log" 2>&1 &
            docker_pid=$!
            docker_started_here=1
            for _ in $(seq 1 100); do
                docker_answers && break
                sleep 0.3
            done
            docker_answers || echo "warning: dockerd did not answer; see artifacts/dockerd.log" >&2
        fi
    else
        echo "warning: no Docker engine answers and not root, so not installing one; the Docker tests will fail." >&2
    fi
elif [ "$is_root" -eq 1 ] && ! dpkg -s busybox-static > /dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static \
        || echo "warning: could not install busybox-static; the Docker tests will fail" >&2
fi

# The chaos suite's network-cut scenarios drop a namespace's packets with iptables (docker.io
# brings it in too; a machine with an engine already may not have it).
if [ "$is_root" -eq 1 ] && ! command -v iptables > /dev/null 2>&1; then
    echo "iptables missing; installing it with apt-get."
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables; } \
        || echo "warning: could not install iptables; the network-cut chaos tests will fail" >&2
fi

# The install test publishes the Native AOT client, which links with the machine's C toolchain.
if [ "$is_root" -eq 1 ] && ! command -v cc > /dev/null 2>&1; then
    echo "C toolchain missing; installing gcc and zlib1g-dev with apt-get (Native AOT client)."
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev; } \
        || echo "warning: could not install a C toolchain; the install test will fail" >&2
fi

# initdb and postgres refuse to run as root, so as root the tests run them as this user.
if [ "$is_root" -eq 1 ] && ! id -u postgres > /dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

if ! dotnet build "$target" -c Debug; then
    echo "error: build failed" >&2
    summary 0 1 0
    exit 1
fi

rm -rf "$results_dir"
mkdir -p "$results_dir"
test_rc=0
dotnet test "$target" --no-build -c Debug \
    --logger "trx" --results-directory "$results_dir" \
    --blame-hang-timeout 5m "$@" || test_rc=$?

# Sum the ResultSummary counters of every .trx written by this run.
passed=0 failed=0 skipped=0 files=0
counter() { # attribute-name counters-element
    local value
    value="$(printf '%s' "$2" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p")"
    echo "${value:-0}"
}
while IFS= read -r -d '' trx; do
    files=$((files + 1))
    counters="$(grep -o '<Counters [^>]*>' "$trx" | head -n 1 || true)"
    passed=$((passed + $(counter passed "$counters")))
    failed=$((failed + $(counter failed "$counters") + $(counter error "$counters") \
        + $(counter timeout "$counters") + $(counter aborted "$counters")))
    # Skipped tests are in total but not in executed (notExecuted stays 0 for them).
    skipped=$((skipped + $(counter total "$counters") - $(counter executed "$counters")))
done < <(find "$results_dir" -name '*.trx' -print0)

status=0
if [ "$failed" -gt 0 ]; then
    status=1
elif [ "$test_rc" -ne 0 ]; then
    # A crashed or hung test host can leave failures out of the counters; still count one.
    echo "error: dotnet test exited with $test_rc (crashed or hung test host?); see $results_dir" >&2
    failed=1
    status=1
elif [ "$((passed + failed))" -eq 0 ]; then
    echo "error: no tests ran ($files result files in $results_dir)" >&2
    status=1
fi

summary "$passed" "$failed" "$skipped"
exit "$status"
