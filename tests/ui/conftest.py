"""Browser fixtures: Debian's chromium driven by Playwright, and a headless JupyterLab on 127.0.0.1.

No browser is ever downloaded: Playwright drives /usr/bin/chromium, which `scripts/install_chromium.sh`
installs with apt-get when it is missing. Every page blocks requests to any host but the local server,
and records them, so a test can assert that nothing was fetched from the network (no CDN).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
# The folder JupyterLab serves; KL_UI_ROOT points it at a copy of the repo's layout (for trying the test out)
LAB_ROOT = Path(os.environ.get("KL_UI_ROOT", REPO))
CHROMIUM = Path(os.environ.get("KL_CHROMIUM", "/usr/bin/chromium"))
INSTALL_SCRIPT = REPO / "scripts" / "install_chromium.sh"
# Chromium as root with no network: no sandbox, no GPU, nothing in the background that phones home.
# Playwright's launch() gives every browser a fresh, empty profile (its own temporary --user-data-dir).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 1000}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

# JupyterLab settings for an unattended run: never write the notebook back (autosave would store the
# outputs in a committed notebook), keep every cell in the DOM, and ask the network for nothing.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "recordTiming": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}


def pytest_configure(config):
    config.addinivalue_line("markers", "ui: drives a real browser (headless chromium) through Playwright")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(reason: str):
    """Skip where the browser cannot be had on a developer's machine; fail in CI or as root, where it must run."""
    if _in_ci() or os.geteuid() == 0:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """/usr/bin/chromium, installed with apt-get by scripts/install_chromium.sh when it is missing."""
    if not CHROMIUM.exists():
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, "CHROMIUM": str(CHROMIUM)},
        )
        if proc.returncode != 0 or not CHROMIUM.exists():
            _unavailable(
                f"{CHROMIUM} is missing and {INSTALL_SCRIPT.relative_to(REPO)} could not install it "
                f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}"
            )
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path):
    """A headless Debian chromium driven by Playwright (never a browser of Playwright's own)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: .venv/bin/pip install -e '.[test]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """A page whose requests to any host but the local ones are aborted and recorded in `blocked`."""

    page: object
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def offline_page(browser, request):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, service_workers="block")
    result = OfflinePage(page=None)

    def guard(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            result.blocked.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and result.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: result.console_errors.append(f"pageerror: {exc}"))
    result.page = page
    try:
        yield result
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:  # what the browser showed, for the CI log's reader
            shot = REPO / "results" / "ui" / f"{request.node.name}-failure.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=shot, full_page=True, timeout=30_000)
                print(f"screenshot of the failure: {shot}; blocked: {result.blocked}; errors: {result.console_errors}")
            except Exception as exc:  # a diagnostic must not mask the failure
                print(f"no failure screenshot: {exc}")
        context.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class JupyterLab:
    """A running JupyterLab server: its base URL, token, root folder, process and log."""

    base_url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log_path: Path

    def lab_url(self, relpath: str) -> str:
        """The notebook in a workspace of its own, reset: a second page must not restore the first page's
        notebook (JupyterLab saves the open documents of its default workspace on the server)."""
        workspace = quote(Path(relpath).stem, safe="")
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{quote(relpath)}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method != "GET" else None,
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kernel_argv(self, kernel_id: str) -> list[str]:
        """The command line of the kernel process with this id (its connection file names the id)."""
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [a.decode(errors="replace") for a in argv if a]
            if any(f"kernel-{kernel_id}.json" in a for a in args):
                return args
        return []


def _wait_until_up(lab: JupyterLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {lab.proc.returncode}:\n{lab.log()}")
        try:
            lab.api("status", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log()}")


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """JupyterLab from this venv, headless on 127.0.0.1 with a free port and a random token, rooted at the repo."""
    home = tmp_path_factory.mktemp("jupyterlab")
    settings = home / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = secrets.token_hex(24)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    for attempt in range(3):  # a free port can be taken between the probe and the bind: try another
        lab = _start_lab(home, settings, _free_port(), token, env, home / f"jupyterlab-{attempt}.log")
        try:
            _wait_until_up(lab, timeout=120)
            break
        except RuntimeError:
            _stop(lab)
            if attempt == 2 or "already in use" not in lab.log():
                raise
    try:
        yield lab
    finally:
        _stop(lab)


def _start_lab(home: Path, settings: Path, port: int, token: str, env: dict, log_path: Path) -> JupyterLab:
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={LAB_ROOT}",
        "--ServerApp.terminals_enabled=False",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI runs as root
        cmd.append("--allow-root")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=LAB_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return JupyterLab(f"http://127.0.0.1:{port}", token, LAB_ROOT, proc, log_path)


def _stop(lab: JupyterLab) -> None:
    if lab.proc.poll() is None:
        try:
            lab.api("shutdown", method="POST", timeout=10)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        try:
            lab.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.proc.terminate()
            try:
                lab.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                lab.proc.kill()
                lab.proc.wait(timeout=15)
    # kernels the server started live in its process group; end any that outlived it
    try:
        os.killpg(lab.proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session")
def ui_results_dir() -> Path:
    """results/ui/, where the screenshots go (results/ is git-ignored)."""
    path = REPO / "results" / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path
