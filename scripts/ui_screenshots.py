"""Screenshots of the Prefect UI behind the lab's login proxy, with what the page asked and was refused.

    python scripts/ui_screenshots.py --login-file FILE --out DIR NAME=URL [NAME=URL ...]

Drives a headless Chromium over its DevTools protocol (standard library plus ``websockets``,
which Prefect brings): the proxy's basic-auth challenge is answered with the login in FILE (the
``name:password`` line of ``control/identities/<name>``, read here, never put in argv or a URL),
each page is given time to render, saved as NAME.png, and every API answer of 400 or more is
printed (``refused GET /api/... 403``): the requests behind the UI's red error toasts.
Used for the screenshots in docs/images/; not part of any runbook.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


class Browser:
    """One headless Chromium with one page, driven over its DevTools websocket."""

    def __init__(self, width: int, height: int):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="hotspare-ui-")
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.websocket = connect(self._page_url(), max_size=64 * 1024 * 1024, open_timeout=20)
        self.numbers = itertools.count(1)
        self.failed: list[str] = []

    def _page_url(self) -> str:
        deadline = time.monotonic() + 30
        port_file = Path(self.profile) / "DevToolsActivePort"
        while not port_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as answer:
                    pages = [target for target in json.load(answer) if target["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromium shows no page to drive")
            time.sleep(0.2)

    def call(self, method: str, login: str = "", **params) -> dict:
        """Send one command; answer the events that arrive meanwhile; return its result."""
        number = next(self.numbers)
        self.websocket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.websocket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.handle(message, login)

    def handle(self, message: dict, login: str) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Fetch.authRequired":
            name, _, password = login.partition(":")
            self.send(
                "Fetch.continueWithAuth",
                requestId=params["requestId"],
                authChallengeResponse={"response": "ProvideCredentials", "username": name, "password": password},
            )
        elif method == "Fetch.requestPaused":
            self.send("Fetch.continueRequest", requestId=params["requestId"])
        elif method == "Network.responseReceived":
            response = params["response"]
            if response["status"] >= 400 and "/api/" in response["url"]:
                self.failed.append(f"refused {params.get('type', '')} {response['url'].split('/api', 1)[1]} {response['status']}")

    def send(self, method: str, **params) -> None:
        self.websocket.send(json.dumps({"id": next(self.numbers), "method": method, "params": params}))

    def pump(self, seconds: float, login: str) -> None:
        """Answer events for ``seconds`` (the page renders meanwhile)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.handle(json.loads(self.websocket.recv(timeout=left)), login)
            except TimeoutError:
                return

    def close(self) -> None:
        self.websocket.close()
        self.process.kill()  # the chromium this object started
        self.process.wait(timeout=20)
        shutil.rmtree(self.profile, ignore_errors=True)


def shoot(browser: Browser, url: str, target: Path, login: str, settle: float) -> list[str]:
    browser.failed = []
    browser.call("Page.navigate", login, url=url)
    browser.pump(settle, login)
    shot = browser.call("Page.captureScreenshot", login, format="png")
    target.write_bytes(base64.b64decode(shot["data"]))
    return browser.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--login-file", required=True, help="file holding the name:password line")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds each page gets to render")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("pages", nargs="+", metavar="NAME=URL")
    args = parser.parse_args()
    login = Path(args.login_file).read_text().strip()
    args.out.mkdir(parents=True, exist_ok=True)
    browser = Browser(args.width, args.height)
    try:
        browser.call("Network.enable", login)
        browser.call("Page.enable", login)
        browser.call("Fetch.enable", login, handleAuthRequests=True, patterns=[{"urlPattern": "*"}])
        for page in args.pages:
            name, _, url = page.partition("=")
            refused = shoot(browser, url, args.out / f"{name}.png", login, args.settle)
            print(f"{name}: {args.out / (name + '.png')}" + "".join(f"\n  {line}" for line in refused))
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
