"""A real headless browser for tests: Chromium driven over the DevTools protocol on a pipe.

`open_page(path)` loads a local file in a fresh headless Chromium and returns what a person
would check by eye: a screenshot, every console message and uncaught exception, every
resource that failed to load, and the state of the page's images. No Python package is
needed: Chromium's `--remote-debugging-pipe` speaks JSON messages separated by NUL bytes on
file descriptors 3 (commands) and 4 (replies and events).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("no Chromium found (looked for " + ", ".join(BROWSERS) + "); install it with "
                "`apt-get install -y chromium` (Debian/Ubuntu), as .ci/run does")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    screenshot: bytes
    console: list[dict[str, Any]] = field(default_factory=list)  # {"level", "text"}
    exceptions: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # {"src", "complete", "width"}
    title: str = ""

    @property
    def errors(self) -> list[str]:
        """Everything a developer console would show in red."""
        return ([f"console.{m['level']}: {m['text']}" for m in self.console
                 if m["level"] in ("error", "assert")]
                + [f"exception: {e}" for e in self.exceptions]
                + [f"failed to load: {u}" for u in self.failed_loads])


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"the browser exited (code {self.proc.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def open_page(path: Path, browser: str | None = None, width: int = 1280,
              height: int = 2000, timeout: float = 60.0) -> PageReport:
    """Load `path` in headless Chromium; report what it shows and what went wrong."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(INSTALL_HINT)
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="linarch-chromium-")

    def child_fds() -> None:  # the protocol's fixed descriptors: 3 in, 4 out
        high_r, high_w = os.dup(to_browser_r) + 100, os.dup(from_browser_w) + 100
        os.dup2(to_browser_r, high_r)  # out of the way of 3 and 4 first
        os.dup2(from_browser_w, high_w)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    proc = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-pipe", f"--user-data-dir={profile}", "--hide-scrollbars",
         f"--window-size={width},{height}", "about:blank"],
        close_fds=False, preexec_fn=child_fds,  # close_fds would close 3 and 4 after dup2
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(proc, to_browser_w, from_browser_r)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
        session = pipe.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                      "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        pipe.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired", timeout=timeout)
        state = pipe.send("Runtime.evaluate", {"returnByValue": True, "expression": (
            "({title: document.title, images: Array.from(document.images).map(i => "
            "({src: i.src.slice(0, 40), complete: i.complete, width: i.naturalWidth}))})")},
            session=session)["result"]["value"]
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
        report = PageReport(base64.b64decode(shot["data"]), title=state["title"],
                            images=state["images"])
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in pipe.events
                if e.get("method") == "Network.requestWillBeSent"}
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params.get("args", []))
                report.console.append({"level": params.get("type", ""), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                report.exceptions.append(details.get("exception", {}).get(
                    "description", details.get("text", "")))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                report.console.append({"level": entry.get("level", ""),
                                       "text": entry.get("text", "")})
            elif method == "Network.loadingFailed":
                url = urls.get(params.get("requestId", ""), "?")
                report.failed_loads.append(f"{url[:80]} ({params.get('errorText', '')})")
        return report
    finally:
        proc.kill()
        proc.wait(timeout=30)
        os.close(to_browser_w)
        os.close(from_browser_r)
        shutil.rmtree(profile, ignore_errors=True)
