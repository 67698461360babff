#!/usr/bin/env bash
# The project's one test command: package in sync with notebooks, notebooks clean, lint, notebooks run, the
# documentation site built from those runs, pytest (which checks the site in a browser).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1/6 nbdev_export: tinyaction/ must match the notebooks"
# changed or new files after an export mean the committed (or staged) package is stale
changed() { git --no-pager diff --stat -- "$1"; git ls-files --others --exclude-standard -- "$1"; }
nbdev_export
if [ -n "$(changed tinyaction)" ]; then
  changed tinyaction
  echo "tinyaction/ is out of sync with nbs/: run nbdev_export and commit the result" >&2
  exit 1
fi

echo "== 2/6 nbdev_clean: notebooks must be clean"
nbdev_clean
if [ -n "$(changed nbs)" ]; then
  changed nbs
  echo "notebooks are not clean: run nbdev_clean and commit the result" >&2
  exit 1
fi

echo "== 3/6 ruff: notebooks, package, tests and benchmarks lint clean (ruff.toml)"
ruff check .

echo "== 4/6 every notebook runs (nbdev_test's skipped cells and cwd), executed copies kept in build/docs/nbs"
python scripts/run_notebooks.py

echo "== 5/6 the documentation site from those copies (scripts/docs.sh)"
bash scripts/docs.sh

echo "== 6/6 pytest"
python -m pytest tests/ "$@"
