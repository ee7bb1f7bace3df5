#!/usr/bin/env bash
# What the build sandbox costs per build: kiln's empty build in its sandbox (its own namespaces, the
# host's root under a private layer, the launcher, and with `--network internet` pasta) against the
# same empty build with --no-confine, in one run; and, as a baseline, util-linux `unshare` making the
# same kinds of namespaces around `true`.
#
#   cargo build --release && benches/sandbox.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
KILN=${KILN:-target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state
mkdir -p "$work/empty"
printf 'version: 0.2\nphases:\n  build:\n    commands: []\n' > "$work/empty/buildspec.yml"
"$KILN" build -q --no-cache "$work/empty" >/dev/null

now() { date +%s%N; }
best() { sort -n | head -n 1; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() {
  local times=()
  for ((r = 0; r < ROUNDS; r++)); do
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    times+=($((t1 - t0)))
  done
  printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | best)" "$(printf '%s\n' "${times[@]}" | median)"
}

read -r base_best base_med < <(measure "$KILN" build -q --no-cache --no-confine "$work/empty")
read -r none_best none_med < <(measure "$KILN" build -q --no-cache --network none "$work/empty")
read -r inet_best inet_med < <(measure "$KILN" build -q --no-cache --network internet "$work/empty")
read -r unsh_best unsh_med < <(measure unshare -Urmpf --mount-proc -n -i -u true)

awk -v rounds="$ROUNDS" -v bb="$base_best" -v bm="$base_med" -v nb="$none_best" -v nm="$none_med" \
    -v ib="$inet_best" -v im="$inet_med" -v ub="$unsh_best" -v um="$unsh_med" 'BEGIN {
  printf "empty build, best / median of %d rounds\n", rounds
  printf "  --no-confine:          %6.1f / %6.1f ms\n", bb / 1e6, bm / 1e6
  printf "  sandbox, network none: %6.1f / %6.1f ms   set-up + tear-down %.1f ms\n", nb / 1e6, nm / 1e6, (nb - bb) / 1e6
  printf "  sandbox, internet:     %6.1f / %6.1f ms   set-up + tear-down %.1f ms (pasta included)\n", ib / 1e6, im / 1e6, (ib - bb) / 1e6
  printf "  unshare -Urmpf (util-linux) around true: %.1f / %.1f ms\n", ub / 1e6, um / 1e6
  printf "ratio, sandboxed empty build / unconfined: %.2fx (none), %.2fx (internet)\n", nb / bb, ib / bb
}'
