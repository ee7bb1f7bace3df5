#!/usr/bin/env bash
# What a plugin step costs to start: an empty plugin's step (a new instance, its WASI context and
# store, the call, the outcome), measured inside one kiln process over ROUNDS runs (`kiln plugin run
# --repeat`, hidden). The process's first run loads the component from the compiled cache on disk
# (a run before compiled it) and is not timed; the timed runs instantiate from what it loaded, as a
# build's steps do. Against a `sh -c true` baseline (posix_spawn + wait, from a small python3 loop)
# in the same run. The target is under 1 ms p50 for the step.
#
# Then the same plugin as a command on a build's PATH: what its shim runs (`kiln plugin exec SPEC`, a
# new kiln process that loads the compiled component and runs it with the process's stdio), against
# `sh -c true`, over ROUNDS/10 runs.
#
#   cargo build --release && benches/plugin.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1000}
KILN=${KILN:-target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed for the baseline and the percentiles" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KILN_CACHE_DIR=$work/cache KILN_STATE_DIR=$work/state
mkdir -p "$work/src"

# The empty plugin (plugins/empty) when this kiln's build made it; else the probe doing nothing
# but logging its (no) arguments.
newest() { find target/release/build -path "*plugins-target/wasm32-wasip2/release/$1" -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-; }
plugin=$(newest kiln_plugin_empty.wasm)
args=()
if [ -z "$plugin" ]; then
  plugin=$(newest kiln_plugin_probe.wasm)
  args=(args)
fi
[ -n "$plugin" ] || { echo "no empty or probe plugin under target/release/build" >&2; exit 2; }
cp "$plugin" "$work/plugin.wasm"

# The first run compiles the component into the cache; the timed runs load it from there.
"$KILN" plugin run "$work/plugin.wasm" --dir "$work/src" -- "${args[@]}" >/dev/null
"$KILN" plugin run "$work/plugin.wasm" --dir "$work/src" --json --repeat "$ROUNDS" -- "${args[@]}" > "$work/step.json"

python3 - "$work/step.json" "$ROUNDS" "$(basename "$plugin")" "${args[*]:-}" <<'PY'
import json, os, sys, time

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

step = json.load(open(sys.argv[1]))["runs_ns"]
rounds = int(sys.argv[2])
sh = []
for _ in range(rounds):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp("sh", ["sh", "-c", "true"], os.environ)
    os.waitpid(pid, 0)
    sh.append(time.perf_counter_ns() - t0)

s50, s90, b50, b90 = pct(step, 50), pct(step, 90), pct(sh, 50), pct(sh, 90)
plugin = " ".join(a for a in sys.argv[3:5] if a)
print(f"plugin step start from the compiled cache ({plugin}), {len(step)} runs in one kiln")
print(f"  instantiate + run:  p50 {s50 / 1e6:6.3f} ms   p90 {s90 / 1e6:6.3f} ms")
print(f"  sh -c true (fork + exec + wait), {rounds} runs")
print(f"  baseline:           p50 {b50 / 1e6:6.3f} ms   p90 {b90 / 1e6:6.3f} ms")
print(f"ratio, step / sh -c true: {s50 / b50:.2f}x (p50)   target: step p50 < 1 ms: {'met' if s50 < 1e6 else 'NOT met'}")
PY

# The plugin as a command, as a build's shim runs it.
cat > "$work/shim.json" <<JSON
{"name": "empty", "component": "$work/plugin.wasm", "compiled_dir": "$work/cache/components",
 "sha256": null, "grant": "Local", "build_id": "bench:1",
 "source_dir": "$work/src", "temp_dir": "$work/src", "phase_file": "$work/phase",
 "network": false, "local_network": false, "memory_limit": 536870912}
JSON
"$KILN" plugin exec "$work/shim.json" "${args[@]}" >/dev/null
python3 - "$KILN" "$work/shim.json" "$((ROUNDS / 10))" "${args[@]}" <<'PY'
import os, sys, time

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

def timed(argv, rounds):
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawnp(argv[0], argv, os.environ)
        _, status = os.waitpid(pid, 0)
        out.append(time.perf_counter_ns() - t0)
        if status != 0:
            sys.exit(f"{argv} failed")
    return out

kiln, spec, rounds, args = sys.argv[1], sys.argv[2], max(int(sys.argv[3]), 10), sys.argv[4:]
shim = timed([kiln, "plugin", "exec", spec] + args, rounds)
sh = timed(["sh", "-c", "true"], rounds)
s50, b50 = pct(shim, 50), pct(sh, 50)
print(f"the plugin as a command on a build's PATH (kiln plugin exec, a process each), {rounds} runs")
print(f"  kiln plugin exec:   p50 {s50 / 1e6:6.3f} ms   p90 {pct(shim, 90) / 1e6:6.3f} ms")
print(f"  sh -c true:         p50 {b50 / 1e6:6.3f} ms   p90 {pct(sh, 90) / 1e6:6.3f} ms")
print(f"ratio, command / sh -c true: {s50 / b50:.1f}x (p50)")
PY
