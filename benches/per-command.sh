#!/usr/bin/env bash
# Per-command overhead of kiln against a plain shell loop, measured in one run.
#
# A buildspec of N short commands (echo, cd, export, test -f) is built by kiln; the same N commands are run
# each by `sh -c` from a plain bash loop. kiln's fixed cost per build (start-up, source snapshot, log) is
# measured with an empty buildspec and subtracted, so the ratio compares one command against one command.
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

now() { date +%s%N; }
best() { sort -n | head -n 1; }

# Warm the component cache once, so every measured build loads compiled plugins.
"$KILN" build -q "$work/empty" >/dev/null

kiln_full=() kiln_empty=() shell_loop=()
for ((r = 0; r < ROUNDS; r++)); do
  t0=$(now); "$KILN" build -q "$work/project" >/dev/null; t1=$(now)
  kiln_full+=($((t1 - t0)))
  t0=$(now); "$KILN" build -q "$work/empty" >/dev/null; t1=$(now)
  kiln_empty+=($((t1 - t0)))
  t0=$(now)
  (cd "$work/project" && for c in "${commands[@]}"; do sh -c "$c" >/dev/null; done)
  t1=$(now)
  shell_loop+=($((t1 - t0)))
done

full=$(printf '%s\n' "${kiln_full[@]}" | best)
empty=$(printf '%s\n' "${kiln_empty[@]}" | best)
loop=$(printf '%s\n' "${shell_loop[@]}" | best)
awk -v n="$N" -v rounds="$ROUNDS" -v full="$full" -v empty="$empty" -v loop="$loop" 'BEGIN {
  per_kiln = (full - empty) / n; per_sh = loop / n
  printf "commands: %d, best of %d rounds\n", n, rounds
  printf "kiln build, %d commands: %8.1f ms\n", n, full / 1e6
  printf "kiln build, no command:  %8.1f ms (fixed cost per build)\n", empty / 1e6
  printf "sh -c loop, %d commands: %8.1f ms\n", n, loop / 1e6
  printf "per command: kiln %.0f us, sh -c %.0f us\n", per_kiln / 1e3, per_sh / 1e3
  printf "ratio, kiln per command / sh -c per command: %.2fx\n", per_kiln / per_sh
  printf "ratio, whole kiln build / sh -c loop:        %.2fx\n", full / loop
}'
