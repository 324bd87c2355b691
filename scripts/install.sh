#!/usr/bin/env bash
# Builds shoal for this machine and puts it on the PATH:
#   PREFIX/host/   the full shoal (every command; ReadyToRun, needs the .NET 10 runtime)
#   PREFIX/shoal   the client as one native executable (Native AOT): client commands start in
#                  milliseconds; server, edge, agent, dev and sim run PREFIX/host/shoal in its place
#   BIN_DIR/shoal  a link to PREFIX/shoal
# A later run replaces PREFIX as a whole (nothing else in it is kept) and the link.
#
# Usage: scripts/install.sh [--prefix DIR] [--bin-dir DIR] [--no-native] [--rid RID]
#   --prefix DIR   where shoal lives (default ~/.local/share/shoal)
#   --bin-dir DIR  where the `shoal` link goes (default ~/.local/bin; /usr/local/bin system-wide)
#   --no-native    no Native AOT client (it needs a C toolchain: clang or gcc, and zlib);
#                  PREFIX/shoal is then the full shoal, which starts in about 0.3-0.5 s
#   --rid RID      .NET runtime identifier to build for (default: this machine's, e.g. linux-x64)
# Needs the .NET 10 SDK (global.json). Takes a few minutes: two Release publishes.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${HOME}/.local/share/shoal"
bin_dir="${HOME}/.local/bin"
native=1
rid=""

die() {
    echo "install.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; bin_dir="$2"; shift 2 ;;
        --no-native) native=0; shift ;;
        --rid) [ $# -ge 2 ] || die "--rid needs a runtime identifier"; rid="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ -n "$prefix" ] || die "--prefix is empty"
[ -n "$bin_dir" ] || die "--bin-dir is empty"
while [ "${prefix%/}" != "$prefix" ]; do prefix="${prefix%/}"; done
[ -n "$prefix" ] || die "--prefix / is a shared directory; give shoal a directory of its own"
mkdir -p "$(dirname "$prefix")" "$bin_dir"
prefix="$(cd "$(dirname "$prefix")" && pwd)/$(basename "$prefix")"
bin_dir="$(cd "$bin_dir" && pwd)"
case "$prefix" in
    /|/usr|/usr/local|/opt|"$HOME"|"$HOME/.local"|"$HOME/.local/share") die "--prefix $prefix is a shared directory; give shoal a directory of its own (such as $prefix/shoal)" ;;
esac
# The prefix is replaced as a whole: only ever one that an earlier run made (or an empty one).
if [ -e "$prefix" ] && [ ! -e "$prefix/.shoal-install" ] && [ -n "$(ls -A "$prefix" 2>/dev/null || echo x)" ]; then
    die "$prefix exists and was not made by this script; choose another --prefix or remove it"
fi

if [ -z "$rid" ]; then
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) rid=linux-x64 ;;
        Linux-aarch64|Linux-arm64) rid=linux-arm64 ;;
        Darwin-x86_64) rid=osx-x64 ;;
        Darwin-arm64) rid=osx-arm64 ;;
        *) die "cannot tell the runtime identifier of $(uname -s) $(uname -m); pass --rid" ;;
    esac
fi
command -v dotnet >/dev/null || die "the .NET SDK (dotnet) is not on the PATH"

# Built beside the prefix (same file system) and swapped in at the end: a failed build leaves the
# installed shoal as it was.
stage="$(mktemp -d "${prefix}.new.XXXXXX")"
old=""
cleanup() {
    rm -rf "$stage"
    if [ -n "$old" ]; then rm -rf "$old"; fi
}
trap cleanup EXIT

echo "Publishing the full shoal ($rid, ReadyToRun)…"
dotnet publish "$repo_root/src/Shoal.Cli/Shoal.Cli.csproj" -c Release -r "$rid" --self-contained false -o "$stage/host" --nologo -v quiet
rm -f "$stage"/host/*.xml
if [ "$native" = 1 ]; then
    echo "Publishing the native client ($rid, Native AOT)…"
    if ! dotnet publish "$repo_root/src/Shoal.Cli.Native/Shoal.Cli.Native.csproj" -c Release -r "$rid" -o "$stage/native" --nologo -v quiet; then
        die "the Native AOT client did not build (it needs clang or gcc, and zlib); run again with --no-native for the full shoal alone"
    fi
    mv "$stage/native/shoal" "$stage/shoal"
    rm -rf "$stage/native"
else
    ln -s host/shoal "$stage/shoal"
fi
echo "shoal $rid $([ "$native" = 1 ] && echo native || echo full)" > "$stage/.shoal-install"
chmod 755 "$stage"

if [ -e "$prefix" ]; then
    old="$(mktemp -d "${prefix}.old.XXXXXX")"
    mv "$prefix" "$old/"
fi
mv "$stage" "$prefix"
ln -sfn "$prefix/shoal" "$bin_dir/shoal"

version="$("$bin_dir/shoal" --version)"
echo "Installed shoal $version: $bin_dir/shoal -> $prefix/shoal"
case ":${PATH}:" in
    *":$bin_dir:"*) ;;
    *) echo "Note: $bin_dir is not on your PATH; add it, e.g. echo 'export PATH=\"$bin_dir:\$PATH\"' >> ~/.bashrc" ;;
esac
