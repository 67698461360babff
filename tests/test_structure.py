# The house's rule (README, "ls nbs is the reading order"): every module imports only from chapters before its own, and no
# module imports another's private names.
import ast
import json
import re

from conftest import REPO_ROOT


def chapters() -> dict[str, str]:
    "Module name -> its notebook's name, from each notebook's `default_exp`."
    found = {}
    for notebook in sorted((REPO_ROOT / "nbs").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            match = re.match(r"#\|\s*default_exp\s+(\w+)", "".join(cell["source"]))
            if match:
                found[match.group(1)] = notebook.stem
    return found


def imports(module: str) -> list[tuple[str, list[str]]]:
    "(imported tinyaction module, names) for each `from .x import ...` of the exported module."
    tree = ast.parse((REPO_ROOT / "tinyaction" / f"{module}.py").read_text())
    return [(node.module, [a.name for a in node.names]) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module]


def test_every_import_points_to_an_earlier_chapter():
    order = chapters()
    assert {"metrics", "inference", "run_folder", "loaders", "train", "evaluate"} <= set(order)
    late = [f"{module} ({order[module]}) imports {other} ({order[other]})"
            for module in order for other, _ in imports(module) if order[other] >= order[module]]
    assert not late


def test_no_module_imports_another_modules_private_names():
    private = [f"{module} imports {other}.{name}" for module in chapters() for other, names in imports(module)
               for name in names if name.startswith("_")]
    assert not private
