"""The idle daemon's cost: resident memory and CPU seconds per hour.

One source is polled every minute against a loopback server answering 304, the way
NATO's server answers a conditional GET when nothing changed. The baseline, measured in
the same run on the same machine, is a bare uvicorn process serving a minimal ASGI app on
one event loop: the least a process that serves HTTP can cost. Targets: under 100 MB
resident and under 2 CPU seconds per hour.

    .venv/bin/python benchmarks/daemon.py [--seconds 130]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

BARE_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning")
"""


class NotModified(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    polls = 0

    def do_GET(self) -> None:
        NotModified.polls += 1
        if self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = (ROOT / "tests" / "fixtures" / "nato-news-2022-11-26.rss").read_bytes()
        self.send_response(200)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


def measure(proc: subprocess.Popen, settle: float, seconds: float) -> tuple[float, float]:
    time.sleep(settle)  # start-up work (imports, seeds, first publish) is not idling
    start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(proc.pid) - start_cpu
    return rss_mb(proc.pid), used / (time.monotonic() - start) * 3600


def make_project(folder: Path, feed_url: str, port: int, interval: str) -> Path:
    shutil.copytree(ROOT / "archive" / "seed", folder / "archive" / "seed")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = re.sub(
        r'url = "https://www\.nato\.int[^"]*"\ninterval = "[^"]*"',
        f'url = "{feed_url}"\ninterval = "{interval}"',
        text,
    )
    text = text.replace("port = 8080", f"port = {port}")
    (folder / "config.toml").write_text(text, encoding="utf-8")
    return folder / "config.toml"


def run(seconds: float, interval: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotModified)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    feed_url = f"http://127.0.0.1:{server.server_address[1]}/rss.xml"
    with tempfile.TemporaryDirectory() as tmp:
        config = make_project(Path(tmp), feed_url, free_port(), interval)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(free_port())])
        try:
            results = {}
            threads = [
                threading.Thread(
                    target=lambda: results.update(daemon=measure(daemon, 15, seconds))
                ),
                threading.Thread(target=lambda: results.update(bare=measure(bare, 15, seconds))),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for proc in (daemon, bare):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
    (d_rss, d_cpu), (b_rss, b_cpu) = results["daemon"], results["bare"]
    print(f"measured {seconds:.0f}s of idling; polls answered: {NotModified.polls}")
    print(f"{'':<22}{'RSS MB':>10}{'CPU s/h':>10}")
    print(f"{'daemon':<22}{d_rss:>10.1f}{d_cpu:>10.2f}")
    print(f"{'bare uvicorn app':<22}{b_rss:>10.1f}{b_cpu:>10.2f}")
    print(f"ratio daemon/bare: memory {d_rss / b_rss:.2f}x, CPU {d_cpu / max(b_cpu, 0.01):.2f}x")
    print(
        f"targets: RSS < 100 MB {'ok' if d_rss < 100 else 'MISSED'}, "
        f"CPU < 2 s/h {'ok' if d_cpu < 2 else 'MISSED'}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=130, help="idle time measured")
    parser.add_argument("--interval", default="1m", help="poll interval of the source")
    args = parser.parse_args()
    run(args.seconds, args.interval)
