"The widgets in a real browser: JupyterLab on 127.0.0.1, headless Debian chromium driven by Selenium."
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import numpy as np
import pytest

from conftest import REPO_ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO_ROOT / "test-artifacts"
# REFERENCE.md section 5: the flags that keep chromium off the network and out of a sandbox it cannot get here.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,2400"]

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
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, token, tmp_path
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def write_notebook(folder) -> str:
    "A small notebook that shows a ClipBrowser and an ErrorExplorer over the committed sample."
    from tinyaction.data import load_class_map, load_split, multi_hot
    from tinyaction.evaluate import save_scores
    sample = REPO_ROOT / "data" / "sample"
    records = load_split(sample, "val")
    classes = load_class_map(sample)
    targets = np.stack([multi_hot(r, classes) for r in records])
    scores = np.clip(0.35 * targets + np.random.default_rng(0).uniform(0, 0.6, targets.shape), 0, 1)
    save_scores(folder / "scores.npz", [r.id for r in records], scores, classes, targets)
    cells = [f"from tinyaction.widgets import ClipBrowser, ErrorExplorer\nsample = {str(sample)!r}",
             "browser = ClipBrowser(sample, 'train')\nbrowser",
             "ErrorExplorer('scores.npz', root=sample, split='val')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "browse.ipynb")
    return "browse.ipynb"


def run_all_cells(driver, attempts: int = 4):
    "Run > Run All Cells, retried until a cell starts: a click can land before the kernel is wired up."
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    started = "return [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    for _ in range(attempts):
        driver.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(
            By.XPATH, "//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']"))[0].click()
        try:
            WebDriverWait(driver, 15).until(lambda d: d.execute_script(started))
            return
        except TimeoutException:
            continue
    raise AssertionError("JupyterLab never started running the cells")


def test_widgets_render_in_jupyterlab(browser_tools, jupyterlab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = browser_tools
    url, token, folder = jupyterlab
    name = write_notebook(folder)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={folder / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"{url}/lab/tree/{name}?token={token}")
        wait = WebDriverWait(driver, 120)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(@class,'jp-StatusBar')]//*[contains(text(),'Idle')]")))
        run_all_cells(driver)
        video = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-OutputArea video")))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-OutputArea .js-plotly-plot")))
        loaded_images = "return [...document.querySelectorAll('.jp-OutputArea img')].filter(i => i.naturalWidth > 0).length"
        wait.until(lambda d: d.execute_script(loaded_images) > 0)
        assert video.get_attribute("src").startswith("blob:")
        text = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
        assert "20 of 20 clips" in text and "000000" in text and "per class (macro F1" in text
        time.sleep(2)  # let plotly finish laying out before the picture
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "widgets-jupyterlab.png"))
        driver.quit()
