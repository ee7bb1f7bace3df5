#!/usr/bin/env bash
# Revisions against plain tools, measured in one run, printed as ratios.
#
#   1. packaging a 200 MB, 10,000-file tree: `kiln package` (zip, deflate on every core) against
#      `zip -r -X` and `tar czf`; `kiln package --format tgz` against `tar czf`;
#   2. push and pull of a 200 MB revision to a local registry (tests/services/registry.sh) against
#      plain `curl` upload (monolithic PUT) and download of a blob of the same size.
#
#   apt-get install zip unzip docker-registry apache2-utils; cargo build --release && benches/revisions.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/target/release/kiln}
RUNS=${1:-3}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
command -v zip >/dev/null && command -v unzip >/dev/null || { echo "zip and unzip are needed: apt-get install zip unzip" >&2; exit 2; }
command -v docker-registry >/dev/null || { echo "run tests/services/registry.sh install" >&2; exit 2; }

# On tmpfs when there is one: the disk of a shared VM is too noisy for write-heavy ratios.
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
registry_dir=$work/registry
trap 'tests/services/registry.sh stop "$registry_dir" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state DOCKER_CONFIG=$work/docker
now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# best NAME COMMAND...: runs COMMAND RUNS times (after a `prep` hook when set), keeps the fastest.
best() {
  local name=$1 t0 t1 t b=0; shift
  for _ in $(seq 1 "$RUNS"); do
    if declare -F prep >/dev/null; then prep; fi
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    t=$((t1 - t0)); { [ $b = 0 ] || [ $t -lt $b ]; } && b=$t
  done
  printf -v "$name" '%s' "$b"
}

echo "preparing data in $work ..."
# 10,000 files, 200 MB: source-like text (compresses ~4x) and some binary (does not).
mkdir -p "$work/tree"
for d in $(seq 1 100); do mkdir -p "$work/tree/dir$d"; done
python3 - "$work/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(7)
words = [("w%d" % i).encode() for i in range(5000)]
for i in range(10000):
    path = os.path.join(root, "dir%d" % (i % 100 + 1), "f%05d" % i)
    if i % 4 == 0:
        data = os.urandom(20000)
    else:
        data = b" ".join(random.choice(words) for _ in range(4000))[:20000]
    with open(path + (".bin" if i % 4 == 0 else ".txt"), "wb") as f:
        f.write(data)
PY
du -sh "$work/tree" | sed 's/^/tree: /'
sync

# 1. packaging.
prep() { rm -f "$work/out.zip" "$work/out.tgz" "$work/out.zip.manifest.json" "$work/out.tgz.manifest.json"; }
best t_zip bash -c "cd '$work/tree' && zip -r -X -q '$work/out.zip' ."
best t_tar bash -c "tar -C '$work/tree' -czf '$work/out.tgz' ."
best t_kzip "$KILN" package "$work/tree" --no-appspec -o "$work/out.zip"
best t_ktgz "$KILN" package "$work/tree" --no-appspec --format tgz -o "$work/out.tgz"
unset -f prep
echo "package 200 MB / 10,000 files (best of $RUNS):"
echo "  zip -r -X $(ms $t_zip) ms, tar czf $(ms $t_tar) ms"
echo "  kiln package (zip): $(ms $t_kzip) ms = $(ratio $t_kzip $t_zip)x zip -r -X, $(ratio $t_kzip $t_tar)x tar czf"
echo "  kiln package --format tgz: $(ms $t_ktgz) ms = $(ratio $t_ktgz $t_tar)x tar czf"

# 2. push and pull against curl, on a local registry.
tests/services/registry.sh start "$registry_dir" >/dev/null
addr=$(cat "$registry_dir/address")
mkdir -p "$work/big"
head -c 200000000 /dev/urandom > "$work/big/blob.bin"
"$KILN" package "$work/big" --no-appspec -o "$work/big.zip" >/dev/null
head -c "$(stat -c %s "$work/big.zip")" /dev/urandom > "$work/curl.bin"
sync

n=0
curl_push() {
  # What any client must do: know the digest, open an upload, PUT the bytes.
  local digest location
  digest=sha256:$(sha256sum "$work/curl.bin" | cut -d' ' -f1)
  location=$(curl -sSf -X POST -D - -o /dev/null "http://$addr/v2/curl$n/blobs/uploads/" \
    | tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  case $location in http*) ;; *) location="http://$addr$location" ;; esac
  curl -sSf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$work/curl.bin" \
    "$location&digest=$digest" -o /dev/null
}
prep() { n=$((n + 1)); }
best t_cpush curl_push
best t_kpush bash -c "'$KILN' push '$work/big.zip' oci://$addr/kiln\$RANDOM\$RANDOM:v1"
unset -f prep
digest=sha256:$(sha256sum "$work/curl.bin" | cut -d' ' -f1)
prep() { rm -rf "$work/pulled" "$work/curl.out" "$work/kept.zip" "$work/unzipped"; }
best t_cpull curl -sSf -o "$work/curl.out" "http://$addr/v2/curl1/blobs/$digest"
"$KILN" push "$work/big.zip" "oci://$addr/kiln/app:v1" >/dev/null
best t_karch "$KILN" pull "oci://$addr/kiln/app:v1" --archive "$work/kept.zip"
best t_kpull "$KILN" pull "oci://$addr/kiln/app:v1" -o "$work/pulled"
best t_cunzip bash -c "curl -sSf -o '$work/curl.out' 'http://$addr/v2/kiln/app/blobs/$(sha256sum "$work/big.zip" | cut -d' ' -f1 | sed 's/^/sha256:/')' && unzip -q '$work/curl.out' -d '$work/unzipped'"
unset -f prep
echo "push / pull of a $(stat -c %s "$work/big.zip")-byte revision, local registry (best of $RUNS):"
echo "  curl upload (sha256sum + POST + PUT) $(ms $t_cpush) ms, kiln push $(ms $t_kpush) ms = $(ratio $t_kpush $t_cpush)x"
echo "  curl download $(ms $t_cpull) ms, kiln pull --archive (download + verify) $(ms $t_karch) ms = $(ratio $t_karch $t_cpull)x"
echo "  curl download + unzip $(ms $t_cunzip) ms, kiln pull -o (download, verify, safe extraction) $(ms $t_kpull) ms = $(ratio $t_kpull $t_cunzip)x"
