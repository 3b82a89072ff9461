"""What the browser tests share: `chatedit serve` on a free port, Debian's chromium under Playwright, screenshots."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT_MS = 90_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(tmp_path: Path, extra_env: Mapping[str, str] | None = None, **settings: str) -> Iterator[tuple[str, Path]]:
    """`chatedit serve` on a free port and a fresh data dir with these CHATEDIT_* settings; yields (URL, data dir).

    ``extra_env``: more variables for the server, e.g. STREAMLIT_SECRETS_FILES (where the served
    Streamlit reads its secrets: the OIDC providers) rather than the checkout's .streamlit/.
    """
    data_dir = tmp_path / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATEDIT_")}
    env.update(CHATEDIT_DATA_DIR=str(data_dir), CHATEDIT_WORKER_POLL_SECONDS="0.2",
               CHATEDIT_WORKER_SHUTDOWN_GRACE_SECONDS="2")
    env.update({f"CHATEDIT_{name.upper()}": value for name, value in settings.items()})
    env.update(extra_env or {})
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`chatedit serve` did not come up:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield url, data_dir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@contextmanager
def browser_page(shots: Path) -> Iterator[Any]:
    """A Playwright page in Debian's headless chromium; a failure leaves ``shots/failure.png``."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed at /usr/bin/chromium (bash .ci/ensure-chromium installs it)"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            yield page
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def wait_idle(page: Any) -> None:
    """Until the app has finished its rerun (Streamlit shows a running icon meanwhile): keys pressed then act."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')")


def shot(page: Any, path: Path) -> None:
    """A screenshot once every image on the page has loaded (Streamlit loads them after the layout)."""
    page.wait_for_function(
        "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        " && !document.querySelector('[data-testid=\"stSkeleton\"]')")
    page.screenshot(path=str(path), full_page=True)


def keep_screenshots(shots: Path) -> None:
    """Copy the screenshots into docs/screenshots when CHATEDIT_SAVE_SCREENSHOTS=1 (the README shows them)."""
    if os.environ.get("CHATEDIT_SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for picture in shots.glob("*.png"):
            if picture.name != "failure.png":
                shutil.copy(picture, SCREENSHOTS / picture.name)


@contextmanager
def browser_people(shots: Path, *people: str) -> Iterator[dict[str, Any]]:
    """One headless chromium with a context per person (its own cookies, so its own sign-in); yields
    {person: page}. A failure leaves ``shots/failures/<person>.png`` of every person's page (kept out of
    ``keep_screenshots``, which copies only ``shots/*.png``)."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed at /usr/bin/chromium (bash .ci/ensure-chromium installs it)"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        pages = {}
        for person in people:
            page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
            page.set_default_timeout(WAIT_MS)
            pages[person] = page
        expect.set_options(timeout=WAIT_MS)
        try:
            yield pages
        except Exception:
            (shots / "failures").mkdir(exist_ok=True)
            for person, page in pages.items():
                for n, each in enumerate(page.context.pages):  # a person may have opened a second tab
                    try:
                        each.screenshot(path=str(shots / "failures" / f"{person}{n or ''}.png"), full_page=True)
                    except Exception:  # noqa: BLE001 - a page that cannot be drawn must not hide the failure
                        pass
            raise
        finally:
            browser.close()
