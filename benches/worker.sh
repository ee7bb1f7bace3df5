#!/usr/bin/env bash
# Remote build workers, measured in one run against a real PostgreSQL 15 and the S3 server (started
# here through tests/services/, as the tests start them):
#
#   1. submit-to-claim latency of an idle worker (the claim's started_at - submitted_at, both the
#      database's clock), p50 and max over 20 jobs submitted one after another;
#   2. throughput: 8 jobs that each sleep 2 s, all submitted at once, on 1 worker then on 2
#      (one slot each);
#   3. examples/hello-web built remotely against locally, cold (--no-cache) and warm.
#
#   tests/services/postgres.sh install; tests/services/s3.sh install
#   cargo build --release && benches/worker.sh      (KILN=target/debug/kiln for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
KILN=${KILN:-$PWD/target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
PSQL=/usr/lib/postgresql/15/bin/psql

work=$(mktemp -d)
# PostgreSQL runs as its own user when this runs as root: it must reach its folder.
chmod 755 "$work"
workers=()
cleanup() {
  for pid in "${workers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  bash tests/services/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true
  bash tests/services/s3.sh stop "$work/s3" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

queue=$(bash tests/services/postgres.sh start "$work/pg")
export AWS_ENDPOINT_URL
AWS_ENDPOINT_URL=$(bash tests/services/s3.sh start "$work/s3" bench-access bench-secret-0123456789 cache)
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-0123456789 AWS_REGION=us-east-1
export KILN_QUEUE=$queue KILN_CACHE=s3://cache/kiln
"$KILN" queue migrate > /dev/null
sql() { "$PSQL" "$queue" -tAqc "$1"; }

# Client and workers each have a cache folder of their own (their own machine), sharing compiled
# plugins only.
mkdir -p "$work/components"
client() {
  local dir=$work/client-$1
  mkdir -p "$dir"; ln -sfn "$work/components" "$dir/components"
  shift
  "$KILN" --cache-dir "$dir" --state-dir "$dir/state" build --allow-http "$@"
}
start_worker() {
  local dir=$work/worker-$1
  mkdir -p "$dir"; ln -sfn "$work/components" "$dir/components"
  "$KILN" --cache-dir "$dir" --state-dir "$dir/state" worker --allow-http --name "$1" \
    2>>"$work/worker-$1.log" &
  workers+=($!)
}
stop_workers() {
  for pid in "${workers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${workers[@]}"; do wait "$pid" 2>/dev/null || true; done
  workers=()
}
project() {
  mkdir -p "$work/$1"
  printf 'version: 0.2\nphases:\n  build:\n    commands:\n      - %s\n' "$2" > "$work/$1/buildspec.yml"
}

# Compile the plugins once, outside every measure.
project warmup "echo warm"
client warmup "$work/warmup" -q > /dev/null

# 1. Latency of an idle worker.
start_worker w1
sleep 1
project trivial 'echo "job $N"'
for i in $(seq 1 20); do
  client latency --remote "$queue" -q -e "N=$i" "$work/trivial" > /dev/null
  sleep 0.2
done
read -r p50 max < <(sql "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::int,
  round(max(ms))::int FROM (SELECT extract(epoch FROM started_at - submitted_at) * 1000 AS ms
  FROM kiln.jobs) t" | tr '|' ' ')
echo "1. submit-to-claim, idle worker, 20 jobs: p50 ${p50} ms, max ${max} ms (target p50 < 200 ms)"

# 2. Throughput of jobs that sleep.
project sleepy 'sleep 2 && echo "job $N"'
batch() {
  local tag=$1 t0 t1 pids=()
  t0=$(now)
  for i in $(seq 1 8); do
    client "$tag-$i" --remote "$queue" -q -e "N=$tag-$i" "$work/sleepy" > /dev/null &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  t1=$(now)
  echo $((t1 - t0))
}
one=$(batch one)
start_worker w2
sleep 1
two=$(batch two)
stop_workers
echo "2. 8 jobs of sleep 2: 1 worker $(ms "$one") ms, 2 workers $(ms "$two") ms: $(ratio "$one" "$two")x (target >= 1.8x)"

# 3. hello-web, remote against local.
start_worker w3
sleep 1
example=$root/examples/hello-web
time_of() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); echo $((t1 - t0)); }
local_cold=$(time_of client local -q --no-cache -o "$work/out-local" "$example")
local_warm=$(time_of client local -q -o "$work/out-local" "$example")
remote_cold=$(time_of client remote --remote "$queue" -q --no-cache -o "$work/out-remote" "$example")
remote_warm=$(time_of client remote --remote "$queue" -q -o "$work/out-remote" "$example")
stop_workers
diff -r "$work/out-local/site" "$work/out-remote/site" > /dev/null && same=yes || same=NO
echo "3. hello-web: local cold $(ms "$local_cold") ms, warm $(ms "$local_warm") ms;" \
  "remote cold $(ms "$remote_cold") ms, warm $(ms "$remote_warm") ms;" \
  "remote warm / local warm $(ratio "$remote_warm" "$local_warm")x; same artifacts: $same"
