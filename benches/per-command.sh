#!/usr/bin/env bash
# Per-command overhead of kiln against plain `sh -c`, measured in one run.
#
# A buildspec of N short commands (echo, cd, export, test -f) is built by kiln (with --no-cache, so every
# command runs); the same N commands are run each by `sh -c` from a plain sh script. kiln's fixed cost per
# build (start-up, source snapshot, sandbox set-up, log) is measured with an empty buildspec and
# subtracted, so the ratio compares one command against one command. Each kiln mode is measured: the
# default sandbox (the build's own namespaces, `sh` commands forked by the session shell), the sandbox
# with a `sh` started per command (KILN_SESSION_SHELL=0), and --no-confine (commands run on the host).
#
#   cargo build --release && benches/per-command.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
ROUNDS=${2:-5}
KILN=${KILN:-target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state

mkdir -p "$work/project/sub" "$work/empty"
touch "$work/project/marker"
commands=()
for ((i = 0; i < N; i++)); do
  case $((i % 4)) in
    0) commands+=("echo step $i") ;;
    1) commands+=("cd sub && cd ..") ;;
    2) commands+=("export V$i=$i") ;;
    3) commands+=("test -f marker") ;;
  esac
done
{
  printf 'version: 0.2\nphases:\n  build:\n    commands:\n'
  for c in "${commands[@]}"; do printf '      - %s\n' "$c"; done
} > "$work/project/buildspec.yml"
printf 'version: 0.2\nphases:\n  build:\n    commands: []\n' > "$work/empty/buildspec.yml"
# The baseline: a sh script that runs each command with sh -c.
for c in "${commands[@]}"; do printf "sh -c '%s'\n" "$c"; done > "$work/baseline.sh"

now() { date +%s%N; }
best() { sort -n | head -n 1; }

# Warm the component cache once, so every measured build loads compiled plugins.
"$KILN" build -q --no-cache "$work/empty" >/dev/null

loop=()
for ((r = 0; r < ROUNDS; r++)); do
  t0=$(now); (cd "$work/project" && sh "$work/baseline.sh" >/dev/null); t1=$(now)
  loop+=($((t1 - t0)))
done
loop=$(printf '%s\n' "${loop[@]}" | best)
printf "commands: %d, best of %d rounds\n" "$N" "$ROUNDS"
printf "sh script of sh -c, %d commands: %8.1f ms\n" "$N" "$(awk -v l="$loop" 'BEGIN { print l / 1e6 }')"

for mode in sandbox sandbox-sh-per-command no-confine; do
  flags=(--no-cache)
  [ "$mode" = no-confine ] && flags+=(--no-confine)
  session=1
  [ "$mode" = sandbox-sh-per-command ] && session=0
  full=() empty=()
  for ((r = 0; r < ROUNDS; r++)); do
    t0=$(now); KILN_SESSION_SHELL=$session "$KILN" build -q "${flags[@]}" "$work/project" >/dev/null; t1=$(now)
    full+=($((t1 - t0)))
    t0=$(now); KILN_SESSION_SHELL=$session "$KILN" build -q "${flags[@]}" "$work/empty" >/dev/null; t1=$(now)
    empty+=($((t1 - t0)))
  done
  f=$(printf '%s\n' "${full[@]}" | best)
  e=$(printf '%s\n' "${empty[@]}" | best)
  awk -v n="$N" -v mode="$mode" -v full="$f" -v empty="$e" -v loop="$loop" 'BEGIN {
    per_kiln = (full - empty) / n; per_sh = loop / n
    printf "%s: build of %d commands %.1f ms, empty build %.1f ms\n", mode, n, full / 1e6, empty / 1e6
    printf "%s: per command kiln %.0f us, sh -c %.0f us, ratio %.2fx (whole build / sh script: %.2fx)\n",
      mode, per_kiln / 1e3, per_sh / 1e3, per_kiln / per_sh, full / loop
  }'
done
