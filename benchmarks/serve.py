"""Serving a 50-entry Atom feed: our app against a bare ASGI app (and nginx) in the same run.

    .venv/bin/python benchmarks/serve.py [--seconds 3] [--rounds 3] [--connections 64]

Each server runs in its own process pinned to CPU 0; the load generator (wrk when installed,
else an asyncio client in a subprocess) is pinned to CPU 1, with keep-alive and 64
connections, for a bounded time per case. Two cases: a plain GET (200, the whole document)
and a GET with a matching If-None-Match (304, what most feed reader polls get).

The baseline is a bare ASGI app on the same uvicorn settings (make_server: uvloop +
httptools) but uvicorn's own protocol, that answers with the same status, headers and body;
our ratio is the cost of the connection limits (serve.limits), routing, the file cache check
and conditional request handling. nginx serving the same file
is measured too when `nginx` is on PATH. Targets: ours/bare >= 0.8 on both paths, p99 < 15 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLUG = "bench"
URL_PATH = f"/feeds/{SLUG}.atom"
TARGET_RATIO = 0.8
TARGET_P99_MS = 15.0


# --- the document -----------------------------------------------------------------------------


def make_feed(entries: int = 50) -> bytes:
    """A feedgen Atom document shaped like the published partnership feed."""
    from feedgen.feed import FeedGenerator

    paragraph = (
        "NATO Allies and partners met at NATO Headquarters to review cooperation on "
        "interoperability, defence capacity building and resilience, and agreed on next steps "
        "for the Individually Tailored Partnership Programmes. "
    )
    start = datetime(2024, 1, 1, 12, tzinfo=UTC)
    feed = FeedGenerator()
    feed.id("http://127.0.0.1:8080/feeds/bench.atom")
    feed.title("NATO partnerships")
    feed.subtitle("NATO news about its partners and partnership programmes")
    feed.link(href="http://127.0.0.1:8080/feeds/bench.atom", rel="self")
    feed.updated(start + timedelta(days=entries))
    for n in range(entries):
        entry = feed.add_entry(order="append")
        entry.id(f"https://www.nato.int/cps/en/natohq/news_{220000 + n}.htm")
        entry.title(f"Partnership meeting number {n} on interoperability and resilience")
        entry.link(href=f"https://www.nato.int/cps/en/natohq/news_{220000 + n}.htm")
        entry.published(start + timedelta(days=n))
        entry.updated(start + timedelta(days=n))
        entry.summary(paragraph)
        entry.content("<p>" + paragraph * 14 + "</p>", type="html")
        entry.category(term="partnerships")
    return feed.atom_str(pretty=True)


# --- the servers (run in child processes) -------------------------------------------------------


def bare_app(body: bytes, ok: list, not_modified: list, etag: bytes):
    """The least an ASGI app can do to send these responses."""

    async def app(scope, receive, send):
        match = False
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                match = value == etag
        if match:
            await send({"type": "http.response.start", "status": 304, "headers": not_modified})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": ok})
            await send({"type": "http.response.body", "body": body})

    return app


def run_server(kind: str, config_path: str, port: int) -> None:
    from aggregator.config import load
    from aggregator.serve import create_app, make_server
    from aggregator.serve.files import CONTENT_TYPES
    from aggregator.serve.files import load as load_file

    _pin(0)
    config = load(config_path)
    app = None
    if kind == "bare":
        path = config.server.feeds_dir / f"{SLUG}.atom"
        rep = load_file(
            str(path), config.server.feeds_dir, CONTENT_TYPES["atom"], config.server.cache_max_age
        )
        app = bare_app(rep.body, rep.ok, rep.not_modified, rep.etag)
    else:
        app = create_app(config)
    server = make_server(config, app, host="127.0.0.1", port=port)
    if kind == "bare":
        server.config.http = "httptools"  # uvicorn's own protocol: our limits count as our cost
    server.run()


def start_nginx(work: Path, feeds_root: Path, port: int) -> subprocess.Popen | None:
    nginx = shutil.which("nginx")
    if not nginx:
        return None
    (work / "logs").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    types {{ application/atom+xml atom; }}
    charset utf-8;
    charset_types application/atom+xml;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {feeds_root};
        location /feeds/ {{ etag on; expires 300s; add_header Vary Accept-Encoding; }}
    }}
}}
""",
        encoding="utf-8",
    )
    (work / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [nginx, "-p", str(work), "-c", str(conf), "-e", str(work / "logs" / "stderr.log")],
        preexec_fn=lambda: _pin(0),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


# --- load generation -------------------------------------------------------------------------


def wrk_run(port: int, seconds: float, connections: int, etag: str | None) -> dict:
    command = [
        shutil.which("wrk"),
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "2s",
        "--latency",
    ]
    if etag:
        command += ["-H", f"If-None-Match: {etag}"]
    command.append(f"http://127.0.0.1:{port}{URL_PATH}")
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=lambda: _pin(1)
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    requests = int(re.search(r"(\d+) requests in", out)[1])
    p99 = _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out)[1])
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "requests": requests,
        "p99_ms": p99,
        "bad": int(errors[1]) if errors else 0,
        "socket_errors": socket_errors[0] if socket_errors else "",
    }


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def python_run(port: int, seconds: float, connections: int, etag: str | None) -> dict:
    """Fallback load generator: asyncio clients in a child process pinned to CPU 1."""
    args = [sys.executable, __file__, "--client", str(port), str(seconds), str(connections)]
    if etag:
        args.append(etag)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def client_main(port: int, seconds: float, connections: int, etag: str | None) -> None:
    _pin(1)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    extra = f"If-None-Match: {etag}\r\n" if etag else ""
    request = f"GET {URL_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    bad = 0
    limit = 2_000_000  # requests: a bound besides time

    async def one(deadline: float) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline and len(latencies) < limit:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length[1]))
            latencies.append(time.perf_counter() - began)
            bad += status not in (200, 304)
        writer.close()

    async def main() -> float:
        began = time.perf_counter()
        await asyncio.gather(*(one(began + seconds) for _ in range(connections)))
        return time.perf_counter() - began

    elapsed = asyncio.run(main())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    rps = len(latencies) / elapsed
    print(json.dumps({"rps": rps, "requests": len(latencies), "p99_ms": p99, "bad": bad}))


# --- orchestration ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def probe(port: int) -> tuple[str, int, int]:
    """The server's ETag for the document, and the statuses of a plain and a conditional GET."""
    import httpx

    url = f"http://127.0.0.1:{port}{URL_PATH}"
    with httpx.Client(headers={"accept-encoding": "identity"}) as client:
        first = client.get(url)
        etag = first.headers.get("etag", "")
        second = client.get(url, headers={"if-none-match": etag})
    return etag, first.status_code, second.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case and round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="medians of rounds are reported")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    options = parser.parse_args()

    document = make_feed()
    use_wrk = options.load == "wrk" or (options.load == "auto" and shutil.which("wrk"))
    load = wrk_run if use_wrk else python_run
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers drop root privileges and must read the file
        (work / "feeds").mkdir()
        (work / "feeds" / f"{SLUG}.atom").write_bytes(document)
        config = work / "config.toml"
        config.write_text(
            f'[archive]\ndatabase = "{work}/none.db"\n[server]\nfeeds_dir = "{work}/feeds"\n'
            f'[[feeds]]\nslug = "{SLUG}"\ntitle = "Bench"\n',
            encoding="utf-8",
        )
        print(
            f"document: {len(document) / 1024:.0f} KiB Atom, 50 entries; "
            f"{options.connections} keep-alive connections, "
            f"{options.seconds:g}s per case and round, "
            f"load from {'wrk' if load is wrk_run else 'a Python asyncio client'}"
        )
        servers: dict[str, tuple[int, subprocess.Popen]] = {}
        try:
            for kind in ("bare", "ours"):
                port = free_port()
                process = subprocess.Popen(
                    [sys.executable, __file__, "--server", kind, str(config), str(port)]
                )
                servers[kind] = (port, process)
            if not options.no_nginx:
                port = free_port()
                process = start_nginx(work, work, port)
                if process is not None:
                    servers["nginx"] = (port, process)
                else:
                    print("nginx: not on PATH, skipped")
            for port, process in servers.values():
                wait_until_serving(port, process)
            results = measure(servers, load, options)
        finally:
            for _, process in servers.values():
                process.terminate()
            for _, process in servers.values():
                process.wait(timeout=10)
    report(results)


def measure(servers: dict, load, options) -> dict[tuple[str, str], list[dict]]:
    """Every (server, case) measured once per round; bare and ours back to back, so that
    a burst of other work on this shared machine hits both of a round's numbers alike."""
    etags = {}
    for kind, (port, _) in servers.items():
        etag, plain, conditional = probe(port)
        if (plain, conditional) != (200, 304):
            raise SystemExit(f"{kind}: expected 200 then 304, got {plain} then {conditional}")
        etags[kind] = etag
    results: dict[tuple[str, str], list[dict]] = {}
    for round_number in range(options.rounds):
        kinds = list(servers)
        if round_number % 2:
            kinds.reverse()
        for case in ("200", "304"):
            for kind in kinds:
                port, process = servers[kind]
                etag = etags[kind] if case == "304" else None
                cpu_before = cpu_seconds(process.pid)
                result = load(port, options.seconds, options.connections, etag)
                cpu = cpu_seconds(process.pid) - cpu_before
                result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
                results.setdefault((kind, case), []).append(result)
    return results


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children (nginx's worker): a cost per
    request that other work on the machine barely changes, unlike requests per second."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def report(results: dict[tuple[str, str], list[dict]]) -> None:
    print(f"\n{'server':<8}{'case':>6}{'req/s':>10}{'p99 ms':>9}{'CPU us/req':>12}  errors")
    for (kind, case), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        bad = sum(r["bad"] for r in runs)
        sockets = "; ".join(r["socket_errors"] for r in runs if r.get("socket_errors"))
        rps, p99 = _median([r["rps"] for r in runs]), _median([r["p99_ms"] for r in runs])
        cpu = _median([r["cpu_us"] for r in runs])
        print(f"{kind:<8}{case:>6}{rps:>10.0f}{p99:>9.2f}{cpu:>12.1f}  {bad} bad {sockets}")
    print("(medians of the rounds; CPU: the server process's user + system time per request)")
    print()
    verdicts = []
    for case in ("200", "304"):
        ours, bare = results[("ours", case)], results[("bare", case)]
        ratios = [o["rps"] / b["rps"] for o, b in zip(ours, bare, strict=True)]
        ratio = _median(ratios)
        p99 = _median([r["p99_ms"] for r in ours])
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        line = f"{case}: ours/bare = {ratio:.2f}x [rounds: {rounds}] (target >= {TARGET_RATIO})"
        if ("nginx", case) in results:
            nginx = _median([r["rps"] for r in results[("nginx", case)]])
            line += f", ours/nginx = {_median([r['rps'] for r in ours]) / nginx:.2f}x"
        line += f"; ours p99 = {p99:.2f} ms (target < {TARGET_P99_MS:g})"
        cost = _median([b["cpu_us"] / o["cpu_us"] for o, b in zip(ours, bare, strict=True)])
        line += f"; CPU per request bare/ours = {cost:.2f}x"
        print(line)
        verdicts.append(ratio >= TARGET_RATIO and p99 < TARGET_P99_MS)
    print("targets met" if all(verdicts) else "targets NOT met")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--server":
        run_server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, seconds, connections = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
        client_main(port, seconds, connections, sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        main()
