#!/usr/bin/env bash
# The documentation site in site/: the chapters executed (as nbdev_test runs them, unless scripts/test.sh just did),
# laid out with the home and API pages, built by mkdocs. Offline: nothing is fetched to build or to view it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== docs 1/3: execute the chapters into build/docs/nbs"
stale=()
for nb in nbs/*.ipynb; do
  executed="build/docs/nbs/$(basename "$nb")"
  # an executed copy is reused only if it is newer than its chapter and the package
  if [ ! "$executed" -nt "$nb" ] || [ -n "$(find tinyaction -name '*.py' -newer "$executed" -print -quit)" ]; then
    stale+=("$nb")
  fi
done
if [ ${#stale[@]} -gt 0 ]; then
  python scripts/run_notebooks.py "${stale[@]}"
fi

echo "== docs 2/3: pages in build/docs/src"
python scripts/build_docs.py

echo "== docs 3/3: mkdocs build (strict) into site/"
python -m mkdocs build --strict --clean
