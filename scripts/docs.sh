#!/usr/bin/env bash
# The documentation site in site/: the chapters executed (as nbdev_test runs them; those scripts/test.sh just ran reused),
# laid out with the home and API pages, built by mkdocs. Offline: nothing is fetched to build or to view it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== docs 1/3: execute the chapters into build/docs/nbs"
# an executed copy is reused only if it was made from the chapter, package and results files as they are now
python scripts/run_notebooks.py --stale

echo "== docs 2/3: pages in build/docs/src"
python scripts/build_docs.py

echo "== docs 3/3: mkdocs build (strict) into site/"
python -m mkdocs build --strict --clean
