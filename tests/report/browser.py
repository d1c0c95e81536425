"""Headless Chromium for the report tests: the DOM after scripts ran, a screenshot, and (over
the DevTools protocol on a pipe) console errors, uncaught exceptions and every network request.

Install the browser with ``bash scripts/ensure_chromium.sh``. `find_chromium` returns None when
there is none; the tests then skip with that reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
WINDOW = (1280, 1600)


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _args(user_dir: str) -> list[str]:
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH (run scripts/ensure_chromium.sh)")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={user_dir}"]


def dump_dom(html: Path, timeout: float = 90) -> str:
    """The serialized DOM after the page's scripts ran (``--dump-dom``)."""
    with tempfile.TemporaryDirectory() as user:
        out = subprocess.run(_args(user) + ["--virtual-time-budget=5000", "--dump-dom", Path(html).resolve().as_uri()],
                             capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({out.returncode}): {out.stderr[-500:]}")
    return out.stdout


def screenshot(html: Path, png: Path, timeout: float = 90) -> Path:
    """A PNG of the top of the page (``--screenshot``)."""
    with tempfile.TemporaryDirectory() as user:
        out = subprocess.run(_args(user) + ["--virtual-time-budget=5000", f"--screenshot={Path(png).resolve()}",
                                            Path(html).resolve().as_uri()],
                             capture_output=True, text=True, timeout=timeout)
    if not Path(png).is_file():
        raise RuntimeError(f"chromium --screenshot wrote nothing ({out.returncode}): {out.stderr[-500:]}")
    return Path(png)


# ---------------------------------------------------------------------------------------------
# DevTools protocol over --remote-debugging-pipe (Chromium reads commands on fd 3, answers on fd 4;
# messages are JSON separated by NUL bytes)

COUNT_JS = """JSON.stringify({
  plots: document.querySelectorAll('.js-plotly-plot').length,
  divs: document.querySelectorAll('.plotly-graph-div').length,
  svgs: document.querySelectorAll('svg.main-svg').length,
  empty: Array.prototype.filter.call(document.querySelectorAll('.plotly-graph-div'),
                                     function(d){ return !d.querySelector('svg.main-svg'); }).map(function(d){ return d.id; }),
  traces: Array.prototype.map.call(document.querySelectorAll('.js-plotly-plot'),
                                   function(d){ return [d.id, (d.data || []).length]; }),
  plotly: typeof Plotly !== 'undefined' ? Plotly.version : null
})"""


class _Pipe:
    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int):
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            for m in self._read(end):
                if m.get("id") == self.next_id:
                    if "error" in m:
                        raise RuntimeError(f"CDP {method}: {m['error']}")
                    return m.get("result", {})
                self.events.append(m)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        end = time.monotonic() + timeout
        seen = [e for e in self.events if e.get("method") == method]
        while not seen and time.monotonic() < end:
            for m in self._read(end, quiet=True):
                self.events.append(m)
                if m.get("method") == method:
                    seen.append(m)
        return seen[0] if seen else None

    def _read(self, end: float, quiet: bool = False) -> list[dict]:
        left = end - time.monotonic()
        if left <= 0:
            if quiet:
                return []
            raise TimeoutError("no answer from chromium over the DevTools pipe")
        ready, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
        if not ready:
            return []
        chunk = os.read(self.rfd, 1 << 20)
        if not chunk:
            raise RuntimeError(f"chromium closed the DevTools pipe (exit {self.proc.poll()})")
        self.buf += chunk
        *msgs, self.buf = self.buf.split(b"\0")
        return [json.loads(m) for m in msgs if m]


def inspect(html: Path, settle: float = 1.5, timeout: float = 90, evaluate: tuple[str, ...] = ()) -> dict:
    """Load ``html`` and report what a reader's browser would see.

    Returns ``{"requests": [urls], "console": [console errors/warnings], "exceptions": [uncaught],
    "log": [browser log errors], "counts": {plots, divs, svgs, empty, traces, plotly}, "png": bytes,
    "evaluated": [value of each expression in ``evaluate``, run in order after the page settled]}``.
    """
    url = Path(html).resolve().as_uri()
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # Move the child's ends to free fds >= 10 so the dup2 onto 3 and 4 cannot clobber one another.
    hi_r, hi_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
    os.close(to_chrome_r)
    os.close(from_chrome_w)

    def child_fds() -> None:
        os.dup2(hi_r, 3)
        os.dup2(hi_w, 4)

    user = tempfile.mkdtemp(prefix="groklab-chromium-")
    errlog = open(os.path.join(user, "stderr.txt"), "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(_args(user) + ["--remote-debugging-pipe", "about:blank"], pass_fds=(3, 4, hi_r, hi_w),
                            preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=errlog)
    os.close(hi_r)
    os.close(hi_w)
    cdp = _Pipe(proc, to_chrome_w, from_chrome_r)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
        if cdp.wait_event("Page.loadEventFired", timeout) is None:
            raise TimeoutError(f"{url} did not finish loading in {timeout} s")
        cdp.wait_event("groklab.never", settle)  # let Plotly finish drawing; gathers late events
        counts = json.loads(cdp.send("Runtime.evaluate", {"expression": COUNT_JS, "returnByValue": True},
                                     session=session)["result"]["value"])
        evaluated = [cdp.send("Runtime.evaluate", {"expression": js, "returnByValue": True}, session=session)["result"].get("value")
                     for js in evaluate]
        import base64

        png = base64.b64decode(cdp.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])
        ev = [e for e in cdp.events if e.get("sessionId") == session]
        return {
            "requests": [e["params"]["request"]["url"] for e in ev if e.get("method") == "Network.requestWillBeSent"],
            "console": [f"{e['params']['type']}: " + " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])
                        for e in ev if e.get("method") == "Runtime.consoleAPICalled"
                        and e["params"]["type"] in ("error", "warning", "assert")],
            "exceptions": [e["params"]["exceptionDetails"].get("exception", {}).get("description")
                           or e["params"]["exceptionDetails"].get("text") for e in ev if e.get("method") == "Runtime.exceptionThrown"],
            "log": [f"{e['params']['entry']['source']}: {e['params']['entry']['text']}" for e in ev
                    if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"],
            "counts": counts,
            "png": png,
            "evaluated": evaluated,
        }
    finally:
        try:
            cdp.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        errlog.close()
        shutil.rmtree(user, ignore_errors=True)
