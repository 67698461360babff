"""Run every chapter as nbdev_test does (same skipped cells, cwd nbs/), keeping the executed copies for the site.

`python scripts/run_notebooks.py [NOTEBOOK ...]` writes build/docs/nbs/NAME.ipynb for each notebook that ran, and
exits 1 naming each notebook and cell that failed.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError
from nbdev.config import get_config
from nbdev.process import extract_directives

REPO = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 900  # seconds: a cell that hangs fails, named, instead of holding CI (the longest takes about 2 minutes)
EXECUTED = REPO / "build" / "docs" / "nbs"


def skipped(cell: nbformat.NotebookNode, flags: set[str]) -> bool:
    "Whether nbdev_test skips `cell`: not code, an nbdev_export call, `#| eval: false`, or a flag of `flags`."
    if cell.cell_type != "code":
        return True
    if "nbdev_export" + "(" in cell.source:
        return True
    directives = extract_directives(cell, remove=False)
    if str(directives.get("eval:", [""])[0]).lower() == "false":
        return True
    return bool(flags & directives.keys())


def inputs_digest(path: Path) -> str:
    "A SHA-256 of what an executed chapter shows: its cells' sources, the package, and the results files under nbs/."
    digest = hashlib.sha256()
    cells = nbformat.read(path, as_version=4).cells
    digest.update(json.dumps([[c.cell_type, c.source] for c in cells]).encode())
    inputs = sorted((REPO / "tinyaction").glob("*.py")) + sorted(p for p in (REPO / "nbs").rglob("*")
                                                                  if p.is_file() and p.suffix != ".ipynb")
    for file in inputs:
        digest.update(str(file.relative_to(REPO)).encode() + file.read_bytes())
    return digest.hexdigest()


def is_stale(path: Path) -> bool:
    "Whether the executed copy of the chapter at `path` is missing, or was made from other inputs (`inputs_digest`)."
    executed = EXECUTED / path.name
    if not executed.exists():
        return True
    made_from = nbformat.read(executed, as_version=4).metadata.get("tinyaction_docs", {}).get("inputs")
    return made_from != inputs_digest(path)


def run_notebook(path: Path, flags: set[str]) -> tuple[nbformat.NotebookNode, str | None]:
    "The notebook at `path` executed in nbs/ with its widget state, and where it failed (None if it ran)."
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True, timeout=CELL_TIMEOUT)
    # plotly figures as JSON (the site draws them with its own plotly.js); IN_TEST as nbdev_test sets it; the
    # chapters' temporary files in a folder removed after the run (they hold checkpoints of hundreds of MB)
    with tempfile.TemporaryDirectory(prefix=f"{path.stem}-") as scratch, \
         client.setup_kernel(env={**os.environ, "PLOTLY_RENDERER": "plotly_mimetype", "IN_TEST": "1", "TMPDIR": scratch}):
        for index, cell in enumerate(nb.cells):
            if skipped(cell, flags):
                continue
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError) as error:
                return nb, f"{path.name}, cell {index}:\n{cell.source}\n{error}"
        client.set_widgets_metadata()
    return nb, None


def run_and_keep(path: Path, flags: set[str]) -> str | None:
    "Run the notebook at `path`, write its executed copy (or remove a stale one), print its time; where it failed."
    start, inputs = time.time(), inputs_digest(path)
    nb, failure = run_notebook(path, flags)
    if failure:
        (EXECUTED / path.name).unlink(missing_ok=True)
    else:
        nb.metadata["tinyaction_docs"] = {"inputs": inputs}
        nbformat.write(nb, EXECUTED / path.name)
    print(f"{'FAILED' if failure else 'ran'} {path.name} in {time.time() - start:.0f} s", flush=True)
    return failure


def main(argv: list[str] | None = None) -> int:
    "Run the notebooks named (default: all of nbs/), write the executed ones, report failures; the exit status."
    config = get_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: nbs/*.ipynb)")
    parser.add_argument("--flags", default="", help="space-separated flags of cells to run that are normally skipped")
    parser.add_argument("--stale", action="store_true", help="only those whose executed copy is missing or out of date")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="notebooks run at once (as nbdev_test: one a core)")
    args = parser.parse_args(argv)
    flags = set(config.tst_flags.split()) - set(args.flags.split())
    notebooks = [p.resolve() for p in args.notebooks or sorted(Path(config.nbs_path).glob("*.ipynb"))]
    notebooks = [p for p in notebooks if is_stale(p)] if args.stale else notebooks
    EXECUTED.mkdir(parents=True, exist_ok=True)
    # spawned, not forked: each worker starts its kernels from a fresh interpreter
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        failures = [f for f in pool.map(run_and_keep, notebooks, [flags] * len(notebooks)) if f]
    for failure in failures:
        print(f"\n== {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
