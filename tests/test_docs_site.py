"The documentation site (scripts/docs.sh) in headless chromium, served from 127.0.0.1: pages, figures, links, API."
import html
import importlib
import inspect
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from nbdev.process import extract_directives
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from conftest import REPO_ROOT
from test_browser import ARTIFACTS, CHROMIUM_FLAGS, browser_tools, free_port, wait_until_answers  # noqa: F401 (fixture)

SITE = REPO_ROOT / "site"
CHAPTERS = [p.stem for p in sorted((REPO_ROOT / "nbs").glob("*.ipynb"))]
VISITED = ["index.html", "00a_data.html", "03_train.html", "05_explore.html"]
# Per plotly div: whether plotly.js has drawn it (its SVG root is there) with data (at least one trace).
PLOTLY_DRAWN = ("return [...document.querySelectorAll('.plotly-graph-div')]"
                ".map(d => d.querySelector('.main-svg') !== null && (d._fullData || []).length > 0)")
SITE_INPUTS = ["nbs/*.ipynb", "tinyaction/*.py", "scripts/build_docs.py", "mkdocs.yml", "README.md"]

pytestmark = pytest.mark.slow


class PageLinks(HTMLParser):
    "The ids, links (href) and loaded resources (src, stylesheets) of one HTML page, and its text."

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.resources, self.text = set(), [], [], []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if attrs.get("src"):
            self.resources.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.resources.append(attrs["href"])

    def handle_data(self, data: str):
        self.text.append(data)


def parse(page: Path) -> PageLinks:
    "The links, ids and text of a built page."
    parser = PageLinks()
    parser.feed(page.read_text())
    return parser


def page_text(page: Path) -> str:
    "The visible words of a built page, whitespace collapsed."
    return " ".join("".join(parse(page).text).split())


@pytest.fixture(scope="module")
def site() -> Path:
    "The built site; built here by scripts/docs.sh if scripts/test.sh has not built it, or a chapter or the package changed."
    built = (SITE / "index.html").stat().st_mtime if (SITE / "index.html").exists() else 0
    if any(p.stat().st_mtime > built for pattern in SITE_INPUTS for p in REPO_ROOT.glob(pattern)):
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "docs.sh")], cwd=REPO_ROOT, check=True)
    return SITE


@pytest.fixture(scope="module")
def server(site):
    "http.server on 127.0.0.1 serving the site."
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(site)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/index.html", process, timeout=30)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def driver(browser_tools, tmp_path):  # noqa: F811 (the fixture imported above)
    "Headless chromium that keeps the console's messages."
    chromium, driver_path = browser_tools
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})  # console, and every request
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    yield browser
    browser.quit()


def remote_requests(driver) -> list[str]:
    "The network URLs (http, https, ws) the page asked for since the last call that are not on the local server."
    urls = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in urls if m["method"] == "Network.requestWillBeSent"]
    return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).hostname != "127.0.0.1"]


def open_page(driver, url: str, page: str) -> list[bool]:
    "Load `page` and wait until its plotly figures are drawn with data; what each figure shows."
    driver.get(f"{url}/{page}")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    try:
        wait.until(lambda d: all(d.execute_script(PLOTLY_DRAWN)))
    except TimeoutException:
        pytest.fail(f"{page}: plotly figures drawn with data {driver.execute_script(PLOTLY_DRAWN)}")
    return driver.execute_script(PLOTLY_DRAWN)


@pytest.mark.parametrize("page", VISITED)
def test_page_loads_and_draws_its_figures(server, driver, page):
    figures = open_page(driver, server, page)
    if page == "05_explore.html":  # its FigureWidgets (per-class bars, heatmap), drawn from the state saved at execution
        assert len(figures) >= 2, f"05_explore shows {len(figures)} plotly figures"
    if figures:  # the screenshot shows the first figure (README: 05_explore's)
        driver.execute_script("document.querySelector('.plotly-graph-div').scrollIntoView({block: 'center'})")
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"docs-site-{Path(page).stem}.png"))
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, f"{page}: console errors {severe}"
    assert not remote_requests(driver), f"{page}: requests off the local server"
    if page != "index.html":
        code = " ".join(e.text for e in driver.find_elements("css selector", ".jp-InputArea pre"))
        assert code and "#|" not in code, f"{page}: nbdev directives shown, or no code"


def test_every_page_with_figures_draws_them_with_data_and_fetches_nothing_remote(site, server, driver):
    pages = sorted(p.name for p in site.glob("*.html") if "plotly-graph-div" in p.read_text())
    assert len(pages) >= 5, pages  # 05_explore, 06_experiments, 07_long_tail, 08_ensembles, 09_predict, ...
    problems = []
    for page in pages:
        figures = open_page(driver, server, page)
        severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        remote = remote_requests(driver)
        if not figures or severe or remote:
            problems.append(f"{page}: {len(figures)} figures, console errors {severe}, remote requests {remote}")
    assert not problems, "\n".join(problems)


def test_internal_links_resolve_and_nothing_loads_from_the_network(site):
    broken, remote = [], []
    parsed = {page: parse(page) for page in site.rglob("*.html")}
    for page, links in parsed.items():
        remote += [f"{page.name}: {r}" for r in links.resources if urlsplit(r).scheme in ("http", "https") or r.startswith("//")]
        for href in links.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue
            folder = site if parts.path.startswith("/") else page.parent  # 404.html links from the root
            target = (folder / unquote(parts.path).lstrip("/")).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {href} (no such page)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parsed[target].ids:
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken)
    assert not remote, "\n".join(remote)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shows_its_cells_but_not_the_hidden_ones(site, chapter):
    text = page_text(site / f"{chapter}.html")
    shown, hidden = [], []
    for cell in nbformat.read(REPO_ROOT / "nbs" / f"{chapter}.ipynb", as_version=4).cells:
        if cell.cell_type == "code" and cell.source.strip():
            directives = extract_directives(cell)  # strips the directive lines, as the page does
            body = " ".join(cell.source.split())
            (hidden if {"hide", "default_exp"} & directives.keys() else shown).append(body)
    missing = [body[:80] for body in shown if body and body not in text]
    assert not missing, f"{chapter}: code cells missing (a stale executed copy? rerun scripts/docs.sh): {missing}"
    assert not [body for body in hidden if body and body in text], f"{chapter}: a hidden cell is shown"


def test_nav_lists_the_chapters_in_reading_order(site):
    links = parse(site / "index.html").links
    chapters = [c for c in dict.fromkeys(Path(link).stem for link in links) if c in CHAPTERS]
    assert chapters == CHAPTERS


def test_search_indexes_every_chapter_and_api_page(site):
    index = json.loads((site / "search" / "search_index.json").read_text())
    pages = {doc["location"].split("#")[0] for doc in index["docs"]}
    assert {f"{c}.html" for c in CHAPTERS} <= pages and "api/widgets.html" in pages, sorted(pages)


def modules_with_all() -> list[str]:
    "Every module of tinyaction that declares `__all__`."
    names = [p.stem for p in (REPO_ROOT / "tinyaction").glob("*.py") if not p.stem.startswith("_")]
    return sorted(n for n in names if "__all__ =" in (REPO_ROOT / "tinyaction" / f"{n}.py").read_text())


def without_markup(text: str) -> str:
    "`text` without markdown's backticks and asterisks (emphasis, or a product left as written), whitespace collapsed."
    return " ".join(re.sub(r"[`*]", "", text).split())


@pytest.mark.parametrize("module", modules_with_all())
def test_api_page_shows_every_public_name_with_its_docstring(site, module):
    page = site / "api" / f"{module}.html"
    assert page.is_file(), f"no API page for tinyaction.{module}"
    ids, text = parse(page).ids, without_markup(html.unescape(page_text(page)))
    imported = importlib.import_module(f"tinyaction.{module}")
    missing = []
    for name in imported.__all__:
        obj = getattr(imported, name)
        if f"tinyaction.{module}.{name}" not in ids:
            missing.append(f"{name} (no entry)")
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            doc = obj.__doc__ if inspect.isfunction(obj) else obj.__dict__.get("__doc__")
            if not doc or doc.startswith(f"{name}("):  # none, or the signature a dataclass writes in its place
                missing.append(f"{name} (no docstring)")
            elif without_markup(doc.strip().splitlines()[0]) not in text:
                missing.append(f"{name} (docstring: {doc.strip().splitlines()[0]!r})")
    assert not missing, f"tinyaction.{module}: {missing}"


def test_chapter_names_and_notebook_links_point_at_the_pages(site):
    links = parse(site / "04_evaluate.html").links  # its text names `03_train` and `02d_inference`
    assert {"03_train.html", "02d_inference.html"} <= set(links), sorted(set(links))
    assert not [link for page in site.glob("*.html") for link in parse(page).links if urlsplit(link).path.endswith(".ipynb")]
