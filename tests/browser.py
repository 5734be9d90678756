"""Headless Chromium driven through the Chrome DevTools Protocol, for the UI tests: open a
page, wait for text, and click an element as a user does (mouse pressed and released at its
centre, through ``Input.dispatchMouseEvent``), not by changing the URL.

The protocol over a WebSocket with aiohttp (which MLflow already installs); no Playwright
download, no network: Debian's ``chromium`` package, run with the flags of a closed machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = [  # the machine's closed network: no background connections
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900",
]  # fmt: skip


class Browser:
    """One Chromium process with one page; use as a context manager."""

    def __init__(self, executable: str, profile: Path, timeout: float = 60.0) -> None:
        self.executable, self.profile, self.timeout = executable, profile, timeout
        self.loop = asyncio.new_event_loop()
        self.proc: subprocess.Popen | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: Any = None
        self.next_id = 0

    # -- process and connection ---------------------------------------------------------
    def __enter__(self) -> Browser:
        command = [self.executable, *FLAGS, f"--user-data-dir={self.profile}"]
        command += ["--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self.timeout
        port = None
        while port is None:
            line = self.proc.stderr.readline()
            if not line and (self.proc.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = found and int(found.group(1))
        self.loop.run_until_complete(self._connect(port))
        return self

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as reply:
            targets = await reply.json(content_type=None)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()

        self.loop.run_until_complete(close())
        self.loop.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    # -- the protocol ---------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict:
        """One DevTools command; its result (events in between are dropped)."""

        async def call() -> dict:
            self.next_id += 1
            message = {"id": self.next_id, "method": method, "params": params}
            await self.ws.send_str(json.dumps(message))
            while True:
                message = json.loads((await self.ws.receive(timeout=self.timeout)).data)
                if message.get("id") == self.next_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]

        return self.loop.run_until_complete(call())

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    # -- what a user does -------------------------------------------------------------------
    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def url(self) -> str:
        return self.evaluate("location.href")

    def wait_for(self, *words: str) -> str:
        """The page's text once every word is in it (else AssertionError with the text)."""
        deadline = time.monotonic() + self.timeout
        while True:
            text = self.text()
            if all(w in text for w in words):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {words} on {self.url()}:\n{text[:3000]}")
            time.sleep(0.3)

    def click(self, selector: str, text: str) -> None:
        """Click, with the mouse, the element matching ``selector`` whose text contains
        ``text`` and least else (waited for; scrolled into view first)."""
        find = (  # the innermost match: the one with the least text
            f"[...document.querySelectorAll({json.dumps(selector)})]"
            f".filter(e => e.innerText && e.innerText.includes({json.dumps(text)}))"
            ".sort((a, b) => a.innerText.length - b.innerText.length)[0]"
        )
        box_of = (
            f"(() => {{ const e = {find}; if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        deadline = time.monotonic() + self.timeout
        while (box := self.evaluate(box_of)) is None:
            if time.monotonic() > deadline:
                page = self.text()[:3000]
                raise AssertionError(f"no {selector} with {text!r} on {self.url()}:\n{page}")
            time.sleep(0.3)
        x, y = box
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
