#!/usr/bin/env bash
# Builds the Lambda functions of a Sentinel checkout and the hello-world baseline with the
# release profile, then times their cold starts (coldstart.py). See README.md.
#
#   bench/coldstart/run.sh [options] CHECKOUT TARGET_DIR [-- coldstart.py arguments]
#
#   CHECKOUT    a Sentinel work tree (any commit: e.g. a `git worktree add --detach` of it)
#   TARGET_DIR  the CARGO_TARGET_DIR to build in (kept between runs: rebuilds are quick)
#
#   --runs N          timed runs per function (default 15)
#   --repeat N        run the whole timer N times, to see its spread (default 1)
#   --json PREFIX     write PREFIX.json (PREFIX-2.json, ... with --repeat) with every run
#   --packages "..."  the function packages to build (default "ingest writer query archiver")
#   --no-build        time the binaries already in TARGET_DIR/release
#
# Builds run under `nice -n 19` (the machine is shared); the timer itself does not.
# The hello crate is built from a copy in TARGET_DIR/coldstart-hello-src, so nothing is
# written into the source tree; its Cargo.lock is committed and used with --locked.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs=15
repeat=1
json=""
packages="ingest writer query archiver"
build=1

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --json) json="$2"; shift 2 ;;
        --packages) packages="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) usage 0 ;;
        --) break ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -ge 2 ]] || usage
checkout="$(cd "$1" && pwd)"
mkdir -p "$2"
target="$(cd "$2" && pwd)"
shift 2
[[ "${1:-}" == "--" ]] && shift

commit="$(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$checkout" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    commit="$commit+dirty"
fi
echo "checkout $checkout at $commit; target dir $target" >&2

if [[ $build == 1 ]]; then
    pkg_args=()
    for p in $packages; do pkg_args+=(-p "$p"); done
    echo "building ${packages} (release) ..." >&2
    (cd "$checkout" && CARGO_TARGET_DIR="$target" nice -n 19 cargo build --release --locked "${pkg_args[@]}")

    # The baseline, from a copy (cp -p keeps the mtimes, so an unchanged copy is not rebuilt).
    stage="$target/coldstart-hello-src"
    rm -rf "$stage"
    mkdir -p "$stage"
    cp -Rp "$here/hello/Cargo.toml" "$here/hello/Cargo.lock" "$here/hello/src" "$stage/"
    echo "building the hello baseline (release) ..." >&2
    (cd "$stage" && CARGO_TARGET_DIR="$target" nice -n 19 cargo build --release --locked)
fi

status=0
for i in $(seq 1 "$repeat"); do
    extra=()
    if [[ -n "$json" ]]; then
        if [[ $i == 1 ]]; then extra=(--json "$json.json"); else extra=(--json "$json-$i.json"); fi
    fi
    [[ $repeat -gt 1 ]] && echo "== timer run $i of $repeat" >&2
    python3 "$here/coldstart.py" --bin-dir "$target/release" --runs "$runs" --label "$commit" \
        "${extra[@]}" "$@" || status=$?
done
exit "$status"
