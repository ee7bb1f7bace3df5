#!/usr/bin/env bash
# render.sh SRC OUT: one HTML page per text file; the first line is the page's heading.
set -euo pipefail
src=$1 out=$2
for page in "$src"/*.txt; do
  name=$(basename "$page" .txt)
  {
    printf '<!doctype html>\n<title>%s</title>\n' "$SITE_TITLE"
    printf '<h1>%s</h1>\n' "$(head -n 1 "$page")"
    tail -n +2 "$page" | sed 's|.*|<p>&</p>|'
  } > "$out/$name.html"
done
