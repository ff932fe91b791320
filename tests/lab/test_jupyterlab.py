"""The course as learners run it: `make lab`, open a notebook, Run > Run All
Cells, save. JupyterLab is driven in headless Chromium by Playwright on a
copy of the notebooks, outputs cleared first; the saved notebook must have
run every cell without an error or stderr output, and hold its claims.

Run with `make test-lab` (it installs Playwright and Chromium). `make test`
skips this file: it needs a browser and takes about a minute.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

if not os.environ.get("COURSE_TEST_LAB"):
    pytest.skip("the browser test runs with `make test-lab`", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: The notebooks run in the browser (comma-separated in COURSE_TEST_LAB_NOTEBOOKS).
NOTEBOOKS = os.environ.get(
    "COURSE_TEST_LAB_NOTEBOOKS", "04_reusing_pretrained_layers.ipynb,08_regularization.ipynb"
).split(",")
TOKEN = "course-test-lab"
START_S, RUN_S, SAVE_S = 120, 900, 60  # generous: a slow laptop runs the notebook in 60 s

# True once JupyterLab has run the notebook: no cell queued or running ("[*]"),
# every code cell numbered, or an empty prompt left where Run All stopped at
# an error (the outputs were cleared, so a number means this run).
FINISHED = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  const numbered = prompts.filter(p => /^\\[\\d+\\]:$/.test(p)).length;
  return prompts.length > 0 && numbered > 0 && !prompts.some(p => p.includes('*'));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=NOTEBOOKS)
def notebook(request) -> str:
    return request.param


@pytest.fixture
def lab(tmp_path, notebook):
    """JupyterLab as `make lab` starts it, on a copy of notebooks/ with the
    outputs cleared, its settings and workspaces in tmp_path; yields
    (url, the copied notebooks folder); stopped in all cases."""
    notebooks = Path(shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks"))
    path = notebooks / notebook
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)

    # No "get notified about Jupyter news?" pop-up over the screenshot, and
    # no attempt to fetch the news.
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')

    port = _free_port()
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter")),
            "lab",
            str(notebooks),
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.5)
        yield url, notebooks
    finally:
        server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def page():
    """A headless Chromium page: Debian's `chromium` (or $CHROMIUM), closed
    in all cases."""
    chromium = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    assert chromium, "no Chromium found: `make test-lab` installs it, or set CHROMIUM=/path"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_run_all_cells_in_jupyterlab_then_save(lab, page, notebook):
    url, notebooks = lab
    screenshot = ROOT / "build" / f"jupyterlab_{notebook[:2]}.png"
    try:
        page.goto(f"{url}/lab/tree/{notebook}?token={TOKEN}", timeout=START_S * 1000)
        # The kernel has started and is connected: the status bar says so.
        status = page.locator("#jp-main-statusbar").get_by_text("| Idle")
        status.wait_for(timeout=START_S * 1000)

        # Run > Run All Cells, from JupyterLab's own menu.
        page.locator("#jp-menu-panel").get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        page.wait_for_function(FINISHED, timeout=RUN_S * 1000, polling=1000)
        status.wait_for(timeout=RUN_S * 1000)

        # Save with the notebook's toolbar button, then wait until its tab is clean.
        page.locator(".jp-NotebookPanel-toolbar [data-command='docmanager:save']").click()
        tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
        expect(tab).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"), timeout=SAVE_S * 1000)
        claims = page.locator(".jp-OutputArea-output", has_text="✔ ")
        if claims.count():  # the screenshot shows the first claims printed
            claims.first.scroll_into_view_if_needed()
    finally:  # the state of the page, also when a step above failed
        screenshot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(screenshot))

    nb = nbformat.read(notebooks / notebook, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert errors == [], "a cell raised an error"
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], "a cell wrote to stderr"
    not_run = [cell.source[:60] for cell in code if cell.execution_count is None]
    assert not_run == [], "cells not executed (or the notebook was not saved)"
    claims = [
        line
        for o in outputs
        if o.output_type == "stream" and o.name == "stdout"
        for line in o.text.splitlines()
        if line.startswith(("✔ ", "✘ "))
    ]
    assert claims, "the notebook printed no claim"
    assert [line for line in claims if line.startswith("✘")] == [], "a claim failed"
