#!/usr/bin/env bash
# What `kiln pipeline run` adds to the build it runs, measured in one run:
#
#   1. a Source (CodeCommit) -> Build (CodeBuild) pipeline against the same work done by hand (the
#      commit's tree with `git archive | tar -x`, then `kiln build` of it), each run on a new commit
#      so that neither is a cache hit;
#   2. the same with the commit unchanged: the pipeline's build is a cache hit, as is the hand's;
#   3. the time from `kiln pipeline approve` to the end of the execution that waited for it (the
#      driver looks for answers every 200 ms).
#
#   cargo build --release && benches/pipeline.sh [RUNS]     (KILN=target/debug/kiln for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/target/release/kiln}
[ -x "$KILN" ] || { echo "build kiln first: cargo build --release" >&2; exit 2; }
runs=${1:-10}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo=$work/repo
k() { "$KILN" --state-dir "$work/state" --cache-dir "$work/cache" "$@"; }
ms() { date +%s%N | cut -c1-13; }
export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@e GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@e

mkdir -p "$repo" && cd "$repo"
git init -q -b main
cat > buildspec.yml <<'EOF'
version: 0.2
phases:
  build:
    commands:
      - mkdir -p out
      - cp n.txt out/
      - echo built >> out/n.txt
artifacts:
  base-directory: out
  files:
    - '**/*'
EOF
action() { # name category provider config inputs outputs
  printf '{"name":"%s","actionTypeId":{"category":"%s","owner":"AWS","provider":"%s","version":"1"},"runOrder":1,"configuration":%s,"inputArtifacts":%s,"outputArtifacts":%s}' "$@"
}
src=$(action Source Source CodeCommit '{"RepositoryName":"r","BranchName":"main"}' '[]' '[{"name":"Src"}]')
bld=$(action Build Build CodeBuild '{"ProjectName":"p"}' '[{"name":"Src"}]' '[{"name":"Out"}]')
ok=$(action Ok Approval Manual '{}' '[]' '[]')
printf '{"pipeline":{"name":"bench","stages":[{"name":"Source","actions":[%s]},{"name":"Build","actions":[%s]}]}}' "$src" "$bld" > pipeline.json
printf '{"pipeline":{"name":"gate","stages":[{"name":"Source","actions":[%s]},{"name":"Gate","actions":[%s]}]}}' "$src" "$ok" > gate.json
echo 0 > n.txt
git add -A && git commit -qm 0
# Plugins compiled once, before anything is timed.
k pipeline run pipeline.json -q >/dev/null

commit() { echo "$1" > n.txt; git commit -qam "$1"; }
by_hand() {
  rm -rf "$work/tree" && mkdir "$work/tree"
  git archive HEAD | tar -x -C "$work/tree"
  k build "$work/tree" -q -o "$work/out" >/dev/null
}

pipe_cold=0; hand_cold=0; pipe_warm=0; hand_warm=0
for i in $(seq 1 "$runs"); do
  commit "p$i"; t=$(ms); k pipeline run pipeline.json -q >/dev/null; pipe_cold=$((pipe_cold + $(ms) - t))
  t=$(ms); k pipeline run pipeline.json -q >/dev/null; pipe_warm=$((pipe_warm + $(ms) - t))
  commit "h$i"; t=$(ms); by_hand; hand_cold=$((hand_cold + $(ms) - t))
  t=$(ms); by_hand; hand_warm=$((hand_warm + $(ms) - t))
done

approve=0; command=0
for i in $(seq 1 "$runs"); do
  k pipeline run gate.json -q >/dev/null & pid=$!
  # This run's execution (its sequence number is i), waiting at the approval.
  until k pipeline status gate --json 2>/dev/null | tr -d ' \n' | grep -q "\"sequence\":$i,.*\"expiresMs\""; do sleep 0.05; done
  t=$(ms); k pipeline approve gate Gate Ok >/dev/null; c=$(ms); wait $pid
  approve=$((approve + $(ms) - t)); command=$((command + c - t))
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
echo "runs: $runs (kiln: $KILN)"
echo "new commit:  pipeline $((pipe_cold / runs)) ms, by hand (git archive | tar, kiln build) $((hand_cold / runs)) ms: $(ratio $pipe_cold $hand_cold)"
echo "same commit: pipeline $((pipe_warm / runs)) ms, by hand $((hand_warm / runs)) ms (both cache hits): $(ratio $pipe_warm $hand_warm)"
echo "approve -> execution ended: $((approve / runs)) ms (of which the approve command: $((command / runs)) ms)"
