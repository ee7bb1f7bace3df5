#!/usr/bin/env bash
# The content-addressed store against plain tools, measured in one run, printed as ratios.
#
#   1. storing 1 GB of mixed files (hash + copy into the store) against `b3sum` over the same files;
#   2. restoring a 20,000-file dependency tree from the store against `tar -x` of the same tree;
#   3. a warm (cache hit) build of examples/hello-web against its cold build.
#
#   apt-get install b3sum; cargo build --release && benches/cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
command -v b3sum >/dev/null || { echo "b3sum is needed: apt-get install b3sum" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state
now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "preparing data in $work ..."
# 1 GB, mixed: four 160 MB files, 2,000 files of 128 KB, 20,000 files of 4 KB.
mkdir -p "$work/mixed/big" "$work/mixed/mid" "$work/mixed/small"
for i in 1 2 3 4; do head -c 160000000 /dev/urandom > "$work/mixed/big/$i.bin"; done
head -c 256000000 /dev/urandom | split -b 128000 -a 4 - "$work/mixed/mid/m"
head -c 80000000 /dev/urandom | split -b 4000 -a 5 - "$work/mixed/small/s"
# A dependency tree: 20,000 files of 1-8 KB in 500 folders.
mkdir -p "$work/deps"
for d in $(seq 1 500); do mkdir -p "$work/deps/pkg$d/lib"; done
head -c 90000000 /dev/urandom | split -b 4500 -a 5 - "$work/deps/chunk"
i=0
for f in "$work"/deps/chunk*; do
  mv "$f" "$work/deps/pkg$((i % 500 + 1))/lib/f$i.js"; i=$((i + 1))
done
tar -C "$work/deps" -cf "$work/deps.tar" .
sync

# 1. hashing into the store vs b3sum (page cache warm for both: each reads the files once first).
cat "$work"/mixed/big/* > /dev/null
t0=$(now); find "$work/mixed" -type f -print0 | xargs -0 -n 2000 b3sum > /dev/null; t1=$(now)
b3=$((t1 - t0))
t0=$(now); cp -r "$work/mixed" "$work/mixed-copy"; t1=$(now)
cp=$((t1 - t0)); rm -rf "$work/mixed-copy"; sync
t0=$(now); "$KILN" cache add "$work/mixed" > /dev/null 2>&1; t1=$(now)
store=$((t1 - t0))
t0=$(now); "$KILN" cache add "$work/mixed" > /dev/null 2>&1; t1=$(now)
again=$((t1 - t0))
echo "1 GB mixed: b3sum $(ms $b3) ms, cp -r $(ms $cp) ms, b3sum + cp -r $(ms $((b3 + cp))) ms"
echo "  kiln cache add, new blobs:     $(ms $store) ms: $(ratio $store $b3)x b3sum, $(ratio $store $((b3 + cp)))x b3sum + cp -r"
echo "  kiln cache add, blobs present: $(ms $again) ms: $(ratio $again $b3)x b3sum"

# 2. restoring 20,000 files vs tar -x.
digest=$("$KILN" cache add "$work/deps" 2>/dev/null)
best_tar=0 best_kiln=0
for r in 1 2 3; do
  rm -rf "$work/out-tar" "$work/out-kiln"; mkdir "$work/out-tar"
  t0=$(now); tar -C "$work/out-tar" -xf "$work/deps.tar"; t1=$(now)
  t=$((t1 - t0)); { [ $best_tar = 0 ] || [ $t -lt $best_tar ]; } && best_tar=$t
  t0=$(now); "$KILN" cache restore "$digest" "$work/out-kiln" 2>/dev/null; t1=$(now)
  t=$((t1 - t0)); { [ $best_kiln = 0 ] || [ $t -lt $best_kiln ]; } && best_kiln=$t
done
diff -r "$work/out-tar" "$work/out-kiln" > /dev/null && same=identical || same=DIFFERENT
echo "20,000-file tree: tar -x $(ms $best_tar) ms, kiln cache restore $(ms $best_kiln) ms (ratio $(ratio $best_kiln $best_tar)x, trees $same)"

# 3. warm vs cold build of the example.
out=$work/example-out
"$KILN" build -q examples/hello-web -o "$out" --no-cache > /dev/null   # compiles the plugins once
best_cold=0 best_warm=0
for r in 1 2 3; do
  t0=$(now); "$KILN" build -q examples/hello-web -o "$out" --no-cache; t1=$(now)
  t=$((t1 - t0)); { [ $best_cold = 0 ] || [ $t -lt $best_cold ]; } && best_cold=$t
  t0=$(now); "$KILN" build -q examples/hello-web -o "$out"; t1=$(now)
  t=$((t1 - t0)); { [ $best_warm = 0 ] || [ $t -lt $best_warm ]; } && best_warm=$t
done
echo "examples/hello-web: cold $(ms $best_cold) ms, warm (cache hit) $(ms $best_warm) ms (ratio $(ratio $best_warm $best_cold)x)"
