#!/usr/bin/env bash
# The project's one test command: package in sync with notebooks, notebooks clean, lint, notebooks run, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1/5 nbdev_export: tinyaction/ must match the notebooks"
# changed or new files after an export mean the committed (or staged) package is stale
changed() { git --no-pager diff --stat -- "$1"; git ls-files --others --exclude-standard -- "$1"; }
nbdev_export
if [ -n "$(changed tinyaction)" ]; then
  changed tinyaction
  echo "tinyaction/ is out of sync with nbs/: run nbdev_export and commit the result" >&2
  exit 1
fi

echo "== 2/5 nbdev_clean: notebooks must be clean"
nbdev_clean
if [ -n "$(changed nbs)" ]; then
  changed nbs
  echo "notebooks are not clean: run nbdev_clean and commit the result" >&2
  exit 1
fi

echo "== 3/5 ruff: notebooks, package, tests and benchmarks lint clean (ruff.toml)"
ruff check .

echo "== 4/5 nbdev_test: every notebook runs"
nbdev_test --do_print

echo "== 5/5 pytest"
python -m pytest tests/ "$@"
