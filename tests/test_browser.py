"""Notebook 08 in a real browser: JupyterLab + headless Chromium driven by Playwright.

Starts JupyterLab on a free local port with a random token (on a *copy* of the notebook, with autosave off, so
the repository's notebook never gets outputs), opens ``08_playground.ipynb``, runs all cells, drags the first
strength slider of the playground, and checks that the edited image's pixels change and that no error or
traceback is shown. Screenshots go to ``outputs/browser/`` (git-ignored) for people to look at.

Which profile: ``toy`` when its DDPM weights are in ``data/toy_ddpm/`` (else ``tiny``), whatever
``ASYRP_PROFILE`` says — the point of this test is the real course model in the real UI, and the toy notebook
fits in a few minutes on two CPU cores (a slider change is about 1.5 s of one core there).
``ASYRP_BROWSER_PROFILE`` overrides the choice.

Skips, saying why, where Chromium (``/usr/bin/chromium``, or ``ASYRP_CHROMIUM``) or the ``playwright``
package is missing, or the browser does not start. Never hangs: every wait has a time limit, a watchdog
kills the server past :data:`TOTAL_LIMIT` seconds, and the server (with its kernel) and the browser are
always shut down. It never downloads a browser (no ``playwright install``).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_playground.ipynb"
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = os.environ.get("ASYRP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SERVER_START_LIMIT = 90  # s for JupyterLab to answer
RUN_ALL_LIMIT = 600  # s for all cells (toy profile on a busy 2-core CPU)
SLIDER_LIMIT = 180  # s for the edited image to change after the slider moved
TOTAL_LIMIT = 1200  # s: the watchdog kills the server after this

pytestmark = pytest.mark.slow


def _profile() -> str:
    override = os.environ.get("ASYRP_BROWSER_PROFILE", "").strip()
    if override:
        return override
    return "toy" if (ROOT / "data" / "toy_ddpm" / "config.json").is_file() else "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings: no autosave, every cell in the DOM, no news or update checks."""
    settings = {
        "docmanager-extension/plugin": {"autosave": False},
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _stop(proc: subprocess.Popen | None) -> None:
    """Terminate a process group we started (the server and its kernels), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def playwright_api():
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ASYRP_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download needed)")
    return sync_playwright


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a copy of notebook 08: yields (base URL, token, log path); always stopped."""
    work = tmp_path / "lab"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK, work / "notebooks" / NOTEBOOK.name)
    _write_settings(tmp_path / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, ASYRP_PROFILE=_profile(), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), PYTHONUNBUFFERED="1")
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--ServerApp.open_browser=False"] + (["--allow-root"] if os.geteuid() == 0 else [])  # CI runs as root
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    watchdog = threading.Timer(TOTAL_LIMIT, _stop, args=(proc,))
    watchdog.daemon = True
    watchdog.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_LIMIT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_LIMIT} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, token, log
    finally:
        watchdog.cancel()
        _stop(proc)


PIXELS_JS = """(el) => {
    if (!el.complete || !el.naturalWidth) return null;
    const c = document.createElement('canvas');
    c.width = el.naturalWidth; c.height = el.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(el, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i++) { h = (Math.imul(h, 31) + d[i]) >>> 0; }
    return h + ':' + c.width + 'x' + c.height;
}"""

PROMPTS_JS = """() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
    .map(p => p.textContent.trim())"""

ERRORS_JS = """() => Array.from(document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-mod-error'))
    .map(e => e.innerText).filter(t => /Traceback|Error:/.test(t))"""


def _kernel_idle(url: str, token: str) -> bool:
    """Whether the server has a session whose kernel is idle (the notebook's, once it has started)."""
    try:
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.loads(r.read())
    except (OSError, ValueError):
        return False
    return any((s.get("kernel") or {}).get("execution_state") == "idle" for s in sessions)


def _wait(predicate, limit: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


def test_playground_in_jupyterlab(playwright_api, jupyterlab):
    url, token, log = jupyterlab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        except Exception as exc:  # an unusable browser binary: skip, saying why
            pytest.skip(f"Chromium at {CHROMIUM} did not start under Playwright: {str(exc).splitlines()[0]}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/lab/tree/notebooks/{NOTEBOOK.name}?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
            _wait(lambda: _kernel_idle(url, token), 180, "the notebook's kernel to start")
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
            started = time.monotonic()

            def done():
                prompts = page.evaluate(PROMPTS_JS)
                return prompts and all(p not in ("[ ]:", "[*]:", "") for p in prompts) and prompts

            try:
                prompts = _wait(done, RUN_ALL_LIMIT, "all cells to run", poll=2)
            except AssertionError:
                page.screenshot(path=str(SHOTS / "run_all_timeout.png"))
                raise AssertionError(f"cells did not all run: prompts {page.evaluate(PROMPTS_JS)}, errors "
                                     f"{page.evaluate(ERRORS_JS)}") from None
            run_all_s = time.monotonic() - started
            assert not page.evaluate(ERRORS_JS), page.evaluate(ERRORS_JS)

            box = page.locator(".asyrp-playground").first
            box.scroll_into_view_if_needed()
            edited = page.locator("img.asyrp-edited").first
            message = page.locator(".asyrp-message").first
            before = _wait(lambda: edited.evaluate(PIXELS_JS), 60, "the edited image")
            page.screenshot(path=str(SHOTS / "playground_before.png"))

            # drag the first strength slider's handle towards its left end (what a person does)
            slider = page.locator(".asyrp-strength").first
            readout = slider.locator(".widget-readout").first
            old_value = readout.inner_text()
            handle = slider.locator(".noUi-handle, .ui-slider-handle").first
            hb = handle.bounding_box()
            track = slider.locator(".noUi-target, .ui-slider").first.bounding_box()
            page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + 0.15 * track["width"], hb["y"] + hb["height"] / 2, steps=8)
            page.mouse.up()
            moved = time.monotonic()
            _wait(lambda: readout.inner_text() != old_value, 10, "the slider's readout to change")
            after = _wait(lambda: (lambda v: v if v and v != before else None)(edited.evaluate(PIXELS_JS)),
                          SLIDER_LIMIT, "the edited image to change after the strength slider moved", poll=0.5)
            change_s = time.monotonic() - moved
            status = box.inner_text()
            shown = message.inner_text()
            box.screenshot(path=str(SHOTS / "playground.png"))
            page.screenshot(path=str(SHOTS / "page.png"))
        finally:
            browser.close()

    assert after != before
    assert "Traceback" not in status and "Error" not in status and "Error" not in shown, status
    print(f"profile {_profile()}: run all {run_all_s:.0f} s, slider {old_value} -> new edit in {change_s:.1f} s; "
          f"screenshot {SHOTS / 'playground.png'}")
