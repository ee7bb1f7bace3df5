#!/usr/bin/env bash
# kiln deploy against rsync, measured in one run, printed as a ratio.
#
#   deploying a 10,000-file revision (no hooks) into an empty destination, against `rsync -a` of
#   the same files (already extracted) into an empty destination. kiln's time includes reading the
#   revision, verifying it, extracting it and installing it through the install plugin.
#
#   apt-get install rsync; cargo build --release && benches/deploy.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/target/release/kiln}
RUNS=${1:-3}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
command -v rsync >/dev/null || { echo "rsync is needed: apt-get install rsync" >&2; exit 2; }

# On tmpfs when there is one: the disk of a shared VM is too noisy for write-heavy ratios.
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state
now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "preparing data in $work ..."
mkdir -p "$work/src/site"
for d in $(seq 1 100); do mkdir -p "$work/src/site/dir$d"; done
head -c 80000000 /dev/urandom | split -b 8000 -a 5 - "$work/src/site/f"
i=0
for f in "$work"/src/site/f*; do mv "$f" "$work/src/site/dir$((i % 100 + 1))/f$i.bin"; i=$((i + 1)); done
echo "$i files, $(du -sh "$work/src/site" | cut -f1)"
printf 'version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: %s\n' "$work/dest" > "$work/src/appspec.yml"
"$KILN" package "$work/src" -o "$work/rev.zip" >/dev/null
"$KILN" plugin list >/dev/null # compile the plugins once, outside the timing
sync

# Each timed command starts with its outputs removed. No sync in between: on this VM, writing into
# memory the kernel just reclaimed costs several times more than the write itself (seen as sys
# time), which made whichever command ran after a sync look slow. Best of RUNS, commands interleaved.
settle() { rm -rf "$work/dest" "$work/root" "$work/x"; }
best_rsync=0 best_kiln=0 best_x=0
for r in $(seq 1 "$RUNS"); do
  settle
  t0=$(now); rsync -a "$work/src/site/" "$work/dest/"; t1=$(now)
  t=$((t1 - t0)); { [ $best_rsync = 0 ] || [ $t -lt $best_rsync ]; } && best_rsync=$t
  settle
  t0=$(now); unzip -q "$work/rev.zip" -d "$work/x"; t1=$(now)
  t=$((t1 - t0)); { [ $best_x = 0 ] || [ $t -lt $best_x ]; } && best_x=$t
  settle
  t0=$(now); "$KILN" deploy "$work/rev.zip" --group bench --root "$work/root" >/dev/null 2>&1; t1=$(now)
  t=$((t1 - t0)); { [ $best_kiln = 0 ] || [ $t -lt $best_kiln ]; } && best_kiln=$t
done
echo "deploy 10,000 files (best of $RUNS):"
echo "  rsync -a $(ms $best_rsync) ms, unzip $(ms $best_x) ms, unzip + rsync -a $(ms $((best_x + best_rsync))) ms"
echo "  kiln deploy (verify, extract, install plugin) $(ms $best_kiln) ms = $(ratio $best_kiln $best_rsync)x rsync -a, $(ratio $best_kiln $((best_x + best_rsync)))x unzip + rsync -a"
