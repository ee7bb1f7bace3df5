#!/usr/bin/env bash
# check.sh SITE: every page has a heading and the site title.
set -euo pipefail
for page in "$1"/*.html; do
  grep -q '<h1>' "$page" || { echo "no heading in $page"; exit 1; }
  grep -q "$SITE_TITLE" "$page" || { echo "no title in $page"; exit 1; }
done
echo "checked $(ls "$1"/*.html | wc -l) pages"
