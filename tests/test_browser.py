"The widgets in a real browser: JupyterLab on 127.0.0.1, headless Debian chromium driven by Selenium."
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request

import nbformat
import pytest
from selenium import webdriver
from selenium.common.exceptions import ElementClickInterceptedException, NoSuchElementException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tinyaction.data import load_split

from conftest import REPO_ROOT, SAMPLE_ROOT, write_sample_scores

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO_ROOT / "test-artifacts"
# REFERENCE.md section 5: the flags that keep chromium off the network and out of a sandbox it cannot get here.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,2400"]
# JupyterLab 4.6 shows the kernel state in the notebook toolbar's execution indicator, earlier 4.x in the status bar.
KERNEL_IDLE = ("return [...document.querySelectorAll('.jp-StatusBar, .jp-Notebook-ExecutionIndicator')]"
               ".some(e => e.textContent.includes('Idle'))")
CELL_STARTED = "return [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
LOADED_IMAGES = "return [...document.querySelectorAll('.jp-OutputArea img')].filter(i => i.naturalWidth > 0).length"
# Per plotly figure: its size and how many traces it has drawn (bars and histograms are g.trace, a heatmap g.hm).
PLOTLY_FIGURES = ("return [...document.querySelectorAll('.jp-OutputArea .js-plotly-plot')].map(p => "
                  "[p.offsetWidth, p.offsetHeight, p.querySelectorAll('g.trace, g.hm').length])")

pytestmark = pytest.mark.slow


@pytest.fixture
def browser_tools():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs Debian's chromium chromium-driver)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return CHROMIUM, DRIVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(url: str, server: subprocess.Popen, timeout: float):
    "Poll `url` until the server answers, failing at once if its process ends."
    def answers(server: subprocess.Popen) -> bool:
        assert server.poll() is None, f"the server exited with {server.returncode}"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            return False
    # WebDriverWait polls any condition with a deadline; here its "driver" is the server process.
    WebDriverWait(server, timeout, poll_frequency=0.5).until(answers)


@pytest.fixture
def jupyterlab(tmp_path):
    "A JupyterLab server with a temporary token and directory; shut down afterwards."
    token, port = secrets.token_hex(16), free_port()
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
                               f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}", "--ServerApp.allow_root=True"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/api/status?token={token}", server, timeout=90)
    except (AssertionError, TimeoutException):
        server.kill()
        pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
    yield url, token, tmp_path
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def write_notebook(folder) -> str:
    "A small notebook that shows a ClipBrowser and an ErrorExplorer over the committed sample."
    write_sample_scores(folder / "scores.npz")
    cells = [f"from tinyaction.widgets import ClipBrowser, ErrorExplorer\nsample = {str(SAMPLE_ROOT)!r}",
             "browser = ClipBrowser(sample, 'train')\nbrowser",
             "ErrorExplorer('scores.npz', root=sample, split='val')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "browse.ipynb")
    return "browse.ipynb"


def click(driver, xpath: str, timeout: float = 30):
    "Click the element at `xpath` once it exists and nothing covers it (the splash screen, a notification)."
    def clicked(driver) -> bool:
        driver.find_element(By.XPATH, xpath).click()
        return True
    WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, ElementClickInterceptedException)).until(clicked)


def run_all_cells(driver, attempts: int = 4):
    "Run > Run All Cells, retried until a cell starts: a click can land before the kernel is wired up."
    for _ in range(attempts):
        click(driver, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']")
        click(driver, "//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']", timeout=10)
        try:
            WebDriverWait(driver, 15).until(lambda d: d.execute_script(CELL_STARTED))
            return
        except TimeoutException:
            continue
    raise AssertionError("JupyterLab never started running the cells")


def plotly_settled(count: int):
    "A WebDriverWait condition: `count` plotly figures have drawn their traces, at the same sizes on two polls in a row."
    previous = []

    def condition(driver) -> bool:
        figures = driver.execute_script(PLOTLY_FIGURES)
        drawn = len(figures) >= count and all(traces > 0 for *_, traces in figures)
        settled = drawn and previous == [figures]
        previous[:] = [figures]
        return settled
    return condition


def test_widgets_render_in_jupyterlab(browser_tools, jupyterlab):
    chromium, driver_path = browser_tools
    url, token, folder = jupyterlab
    name = write_notebook(folder)
    train = load_split(SAMPLE_ROOT, "train")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={folder / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"{url}/lab/tree/{name}?token={token}")
        wait = WebDriverWait(driver, 120)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
        wait.until(lambda d: d.execute_script(KERNEL_IDLE))
        run_all_cells(driver)
        video = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-OutputArea video")))
        wait.until(lambda d: d.execute_script(LOADED_IMAGES) > 0)
        wait.until(plotly_settled(3))  # per-class bars, co-occurrence heatmap, score histogram
        assert video.get_attribute("src").startswith("blob:")
        text = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
        assert f"{len(train)} of {len(train)} clips" in text and train[0].id in text and "per class (macro F1" in text
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "widgets-jupyterlab.png"))
        driver.quit()
