"""Lay out the documentation site's sources in build/docs/src for mkdocs (mkdocs.yml): chapters, home page, API pages.

The chapters are the executed copies in build/docs/nbs (scripts/run_notebooks.py), with nbdev's hidden cells left out,
directives stripped, plotly figures and FigureWidgets drawn from their saved JSON and widget state, and names of the
package linked to the API pages. Home is README.md with its chapter paths linked; plotly.js and MathJax are copied
from their Python packages so that the site needs no network to be viewed.
"""
import ast
import importlib
import inspect
import re
import shutil
import sys
from pathlib import Path

import jupyter_server_mathjax
import nbformat
import plotly
import plotly.io as pio
from fastcore.docments import docments
from nbdev.process import extract_directives

REPO = Path(__file__).resolve().parent.parent
NBS = REPO / "nbs"
EXECUTED = REPO / "build" / "docs" / "nbs"
SOURCE = REPO / "build" / "docs" / "src"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY_JSON = "application/vnd.plotly.v1+json"
HIDDEN = {"hide", "default_exp"}  # nbdev leaves these cells out of its docs


def chapter_modules() -> dict[str, str]:
    "Chapter name -> the module its `#| default_exp` exports, in reading order (`ls nbs`)."
    modules = {}
    for path in sorted(NBS.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            directives = extract_directives(cell, remove=False) if cell.cell_type == "code" else {}
            if "default_exp" in directives:
                modules[path.stem] = directives["default_exp"][0]
    return modules


def public_names(module: str) -> list[str]:
    "The `__all__` of `tinyaction.<module>`, read from its source (no import)."
    tree = ast.parse((REPO / "tinyaction" / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def api_anchors(modules: list[str]) -> dict[str, str]:
    "Each public name -> its URL on the API pages (relative to the site's root)."
    return {name: f"api/{module}.html#tinyaction.{module}.{name}" for module in modules for name in public_names(module)}


def link_names(markdown: str, anchors: dict[str, str], chapters: list[str]) -> str:
    "Markdown with `name` of a public name or a chapter linked to its page (not in code blocks or headings)."
    def link(match: re.Match) -> str:
        name = match.group(1)
        url = anchors.get(name) or (f"{name}.html" if name in chapters else None)
        return f"[`{name}`]({url})" if url else match.group(0)

    def link_line(line: str) -> str:
        if line.startswith("#"):  # no code in headings: mkdocs-jupyter's contents would then miss their anchors
            return line.replace("`", "")
        return re.sub(r"(?<!\[)`(\w+)`(?!\]\()", link, line)  # \w+: chapters start with a digit (`03_train`)
    parts = re.split(r"(```.*?```)", markdown, flags=re.S)
    return "".join(p if p.startswith("```") else "\n".join(map(link_line, p.split("\n"))) for p in parts)


def site_links(markdown: str) -> str:
    "Links as a notebook reader writes them (`03_train.ipynb`, `api/export.md`) pointed at the site's pages."
    return re.sub(r"\]\(((?:\.\./)?(?:api/)?[\w.-]+)\.(?:ipynb|md)(#[^)]*)?\)", r"](\1.html\2)", markdown)


NOISE = re.compile(r"^.*site-packages/.*\w+Warning: .*$\n?(^\s+warnings\.warn\(.*$\n?)?|^.*\[IPKernelApp\] WARNING.*$\n?",
                   re.M)  # libraries' warnings (from site-packages) and kernel notes of the build machine, not the chapter's own


def plotly_html(figure: dict) -> str:
    "A plotly figure as an HTML fragment drawn by the site's plotly.js."
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, config={"responsive": True})


def widget_html(model_id: str, widget_state: dict) -> str | None:
    "HTML of a widget from its saved state: a FigureWidget, a box of them, HTML, a label or a progress bar; None if not."
    entry = widget_state.get(model_id, {})
    state, model = entry.get("state", {}), entry.get("model_name", "")
    if state.get("_anywidget_id", "").endswith("FigureWidget"):
        return plotly_html({"data": state["_widget_data"], "layout": state["_widget_layout"]})
    if model in ("HBoxModel", "VBoxModel"):  # tqdm's progress bar: HTML, FloatProgress, HTML in a row
        parts = [widget_html(child.removeprefix("IPY_MODEL_"), widget_state) for child in state.get("children", [])]
        flow = "row" if model == "HBoxModel" else "column"
        return None if None in parts else f'<div style="display:flex;flex-direction:{flow};gap:0.5em">{"".join(parts)}</div>'
    if model in ("HTMLModel", "LabelModel"):
        return f"<span>{state.get('value', '')}</span>"
    if model in ("FloatProgressModel", "IntProgressModel"):
        return f'<progress value="{state.get("value", 0)}" max="{state.get("max", 100)}"></progress>'
    return None


def static_view(model_id: str, widget_state: dict) -> str:
    "HTML for a widget output as it was when the chapter ran, or a note that it needs a kernel."
    return widget_html(model_id, widget_state) or ("<p><em>An interactive widget (ipywidgets): it needs a running kernel. "
                                                   "Open the chapter in JupyterLab to use it.</em></p>")


def page_outputs(outputs: list, widget_state: dict) -> list:
    "`outputs` with plotly JSON and widget views replaced by HTML that renders without a kernel, and no build noise."
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            output["text"] = NOISE.sub("", output["text"])
            if not output["text"].strip():
                continue
        kept.append(output)
        data = output.get("data", {})
        if PLOTLY_JSON in data:
            data["text/html"] = plotly_html(data.pop(PLOTLY_JSON))
        if WIDGET_VIEW in data:
            data["text/html"] = static_view(data.pop(WIDGET_VIEW)["model_id"], widget_state)
            data.pop("text/plain", None)
    return kept


def chapter_page(path: Path, anchors: dict[str, str], chapters: list[str]) -> nbformat.NotebookNode:
    "The executed chapter at `path` as the site shows it."
    nb = nbformat.read(path, as_version=4)
    widget_state = nb.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = link_names(site_links(cell.source), anchors, chapters)
        elif cell.cell_type == "code":
            if HIDDEN & extract_directives(cell).keys():  # also strips the directive lines from the shown code
                continue
            cell.outputs = page_outputs(cell.outputs, widget_state)
        cells.append(cell)
    nb.cells = cells
    return nb


def table_cell(value: object, code: bool = False) -> str:
    "`value` as a markdown table cell: empty for nothing, as code, or as text with its pipes escaped."
    if value is inspect.Parameter.empty or value is None and not code:
        return ""
    return f"`{value}`" if code else str(value).replace("|", "\\|")  # the tables extension skips pipes in code


def signature_comments(obj: object) -> dict[str, str]:
    "The comments after `*args`/`**kw` and after the return annotation of a function's signature, read from its source."
    if not inspect.isroutine(obj):
        return {}
    lines, comments = inspect.getsource(obj).splitlines(), {}
    stars = [p.name for p in inspect.signature(obj).parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for line in lines:
        for name in stars:
            if found := re.search(rf"\*{{1,2}}{name}\b[^#]*#\s*(.*)$", line):
                comments[name] = found.group(1)
        if found := re.search(r"\)\s*(->[^#]*)?:\s*#\s*(.*)$", line):  # the line that ends the signature
            comments["return"] = found.group(2)
            break
        if line.rstrip().endswith(":") and ")" in line:
            break
    return comments


def parameter_table(obj: object) -> str:
    "A markdown table of `obj`'s parameters with their docments (the comments after them), or '' if none has one."
    try:
        params = docments(obj, full=True)  # a class: its __init__, or a dataclass's fields
        comments = signature_comments(obj)  # fastcore gives a **kw's comment to the return
        kinds = {p.name: p.kind for p in inspect.signature(obj).parameters.values()} if inspect.isroutine(obj) else {}
    except (TypeError, ValueError, OSError):  # constants, objects without Python source
        return ""
    rows = [(name, p) for name, p in params.items() if name not in ("self", "return")]
    if not any(p["docment"] for _, p in rows) and not comments:
        return ""
    lines = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
    for name, p in rows:
        star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(kinds.get(name), "")
        default = p["default"] if p["default"] is inspect.Parameter.empty else repr(p["default"])
        meaning = comments.get(name, "") if star else p["docment"]
        cells = [f"`{star}{name}`", "" if star else table_cell(p["anno"], code=True), table_cell(default, code=True),
                 table_cell(meaning)]
        lines.append(f"| {' | '.join(cells)} |")
    if comments.get("return"):
        anno = params.get("return", {}).get("anno", inspect.Parameter.empty)
        lines.append(f"| returns | {table_cell(anno, code=True)} |  | {table_cell(comments['return'])} |")
    return "\n".join(lines)


def api_page(module: str, chapter: str) -> str:
    "The API page of `tinyaction.<module>`: each public name's signature and docstring, with its parameter table."
    imported = importlib.import_module(f"tinyaction.{module}")
    lines = [f"# tinyaction.{module}", "", f"Chapter: [{chapter}](../{chapter}.ipynb).", ""]
    for name in public_names(module):
        obj = getattr(imported, name)
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            lines += [constant_entry(module, name, obj), ""]
            continue
        lines += [f"::: tinyaction.{module}.{name}", ""]
        table = parameter_table(obj)
        if table:
            lines += [table, ""]
    return "\n".join(lines)


def constant_entry(module: str, name: str, value: object) -> str:
    "A heading and the value of a public constant (mkdocstrings documents functions and classes)."
    shown = repr(value) if len(repr(value)) <= 300 else f"a {type(value).__name__}: see the chapter"
    return f"## `{name}` {{#tinyaction.{module}.{name}}}\n\n`{shown}`"


def api_index(modules: dict[str, str]) -> str:
    "The API reference's first page: every module, in reading order, with its chapter."
    lines = ["# API reference", "", "Every public name of `tinyaction` (each module's `__all__`), module by module.", "",
             "| module | chapter |", "|---|---|"]
    lines += [f"| [tinyaction.{m}]({m}.md) | [{c}](../{c}.ipynb) |" for c, m in modules.items()]
    return "\n".join(lines) + "\n"


def home_page(readme: str, chapters: list[str], modules: dict[str, str]) -> str:
    "README.md with `nbs/NAME.ipynb` linked to the chapter pages, module names to API pages, images from docs/."
    for chapter in chapters:
        readme = readme.replace(f"`nbs/{chapter}.ipynb`", f"[`{chapter}`]({chapter}.ipynb)")
    for module in modules.values():
        readme = readme.replace(f"| `tinyaction.{module}` |", f"| [`tinyaction.{module}`](api/{module}.md) |")
    return readme.replace("](docs/", "](")


def vendor_assets(target: Path):
    "Copy plotly.js and MathJax 2 from their Python packages into the site's assets."
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", target / "plotly.min.js")
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", target / "mathjax", dirs_exist_ok=True)


def main() -> int:
    "Write build/docs/src from the executed chapters; 1 if a chapter has no executed copy."
    modules = chapter_modules()
    chapters = [p.stem for p in sorted(NBS.glob("*.ipynb"))]
    missing = [c for c in chapters if not (EXECUTED / f"{c}.ipynb").exists()]
    if missing:
        print(f"not executed (run scripts/run_notebooks.py): {', '.join(missing)}", file=sys.stderr)
        return 1
    shutil.rmtree(SOURCE, ignore_errors=True)
    (SOURCE / "api").mkdir(parents=True)
    anchors = api_anchors(list(modules.values()))
    for chapter in chapters:
        own = api_anchors([modules[chapter]]) if chapter in modules else {}  # `main` in 09_predict is its own
        page = chapter_page(EXECUTED / f"{chapter}.ipynb", {**anchors, **own}, chapters)
        nbformat.write(page, SOURCE / f"{chapter}.ipynb")
    for chapter, module in modules.items():
        (SOURCE / "api" / f"{module}.md").write_text(api_page(module, chapter))
    (SOURCE / "api" / "index.md").write_text(api_index(modules))
    (SOURCE / "index.md").write_text(home_page((REPO / "README.md").read_text(), chapters, modules))
    for image in (REPO / "docs").glob("*.png"):
        shutil.copy(image, SOURCE / image.name)
    vendor_assets(SOURCE / "assets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
