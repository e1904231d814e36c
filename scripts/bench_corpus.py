"""A corpus from file to index: `minisbert encode` against sentence-transformers, and exact
search against the approximate (usearch) index on the result.

    python scripts/bench_corpus.py --model weights/all-MiniLM-L6-v2 [--texts 100000]

The texts are real: the distinct non-blank lines of the gettext catalogs (tests/corpus.py),
English first, then translations in 20 languages, taken evenly until there are --texts of
them, one per line in a file. Each engine runs in a fresh process, from that file to vectors on
disk, and the table gives for each:
  texts/s    texts ÷ wall time of the whole process (start, model load, read, encode, write);
  peak RSS   the largest resident memory of any one of its processes (ru_maxrss);
  peak PSS   the largest sum, sampled every 0.2 s, of the proportional set size of all its
             processes: pages shared by several (the memory-mapped weights) count once, split
             between them. This is what --workers N costs in memory.
The engines: `minisbert encode` as it runs by default (one process, one batch per core in
threads), with --workers 1 and --workers 2; sentence-transformers' encode (batch_size 32, torch
on all cores) followed by np.save, texts read the same way.

Then, on minisbert's index: 1000 query texts that are not in it (the next lines of the same
catalogs), exact top-10 (util.semantic_search over the index, a block at a time) against
usearch's HNSW graph (ann.py) at several expansion_search settings: recall@10, and the latency
of one query at a time (median of 100) and of the 1000 in one call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench import MULTI_LANGS, machine  # noqa: E402  (the CPU's name; bench.py's languages)

LANGS = MULTI_LANGS  # the 20 languages of bench.py's multilingual case

ST_ENCODE = r"""
import sys, numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
with open(sys.argv[2], encoding="utf-8") as f:
    texts = [line.strip() for line in f if line.strip()]
np.save(sys.argv[3], model.encode(texts, batch_size=32, convert_to_numpy=True))
"""


def corpus_lines(n: int) -> list[str]:
    """n + 1000 distinct real lines: the corpus, then the held-out queries."""
    import corpus
    texts = list(corpus.lines(corpus.english("ja")))
    seen = set(texts)
    others = []
    for lang in LANGS:
        others += [t for t in corpus.lines(corpus.translations(lang)) if t not in seen]
    others = list(dict.fromkeys(others))
    want = n + 1000
    if len(texts) < want:
        texts += corpus.spread(others, want - len(texts))
    return [t.strip() for t in texts[:want]]


def _pss(pid: int) -> int:
    """Proportional set size of a process, in bytes (0 once it has ended)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def run(cmd: list[str], env: dict) -> dict:
    """Wall time, peak RSS of any one process, and peak PSS of the process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_pss = 0
    rss_children = {}
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_pss(p) for p in pids))
        for p in pids[1:]:  # workers: their own peak, read while they live
            try:
                with open(f"/proc/{p}/status") as f:
                    hwm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
                rss_children[p] = max(rss_children.get(p, 0), hwm)
            except (OSError, StopIteration):
                pass
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()[-3000:]}")
    import resource
    rss_self = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # max so far
    return {"wall": wall, "pss": peak_pss, "rss_children": rss_children, "rss_max": rss_self}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="all-MiniLM-L6-v2 folder")
    p.add_argument("--texts", type=int, default=100_000)
    p.add_argument("--skip", default="", help="comma-separated cases to leave out "
                   "(threads, workers1, workers2, st, ann)")
    p.add_argument("--ann-only", metavar="INDEX", help="only the search comparison, on an "
                   "index this script made before with the same --texts")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import numpy as np
    from minisbert.threads import describe_blas
    print(f"{time.strftime('%Y-%m-%d')}; {machine()}; NumPy {np.__version__}, {describe_blas()}")
    texts = corpus_lines(args.texts)
    corpus, queries = texts[:args.texts], texts[args.texts:]
    if args.ann_only:
        return bench_ann(Path(args.ann_only), queries, args.model)
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    src = work / "corpus.txt"
    src.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    print(f"{len(corpus)} texts, {src.stat().st_size / 1e6:.1f} MB, "
          f"mean {np.mean([len(t) for t in corpus]):.0f} characters")

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    minisbert = [sys.executable, "-m", "minisbert", "encode", "-i", str(src), "--model", args.model]
    cases = {
        "threads": ("minisbert encode (threads, default)", minisbert + ["-o", str(work / "idx")]),
        "workers1": ("minisbert encode --workers 1", minisbert + ["-o", str(work / "w1"),
                                                                 "--workers", "1"]),
        "workers2": ("minisbert encode --workers 2", minisbert + ["-o", str(work / "w2"),
                                                                 "--workers", "2"]),
        "st": ("sentence-transformers encode + np.save",
               [sys.executable, "-c", ST_ENCODE, args.model, str(src), str(work / "st.npy")]),
    }
    results = {}
    for key, (name, cmd) in cases.items():
        if key in skip:
            continue
        r = run(cmd, env)
        results[key] = r
        workers = sorted(r["rss_children"].values())
        extra = f"; worker peaks {', '.join(f'{w / 2**20:.0f}' for w in workers)} MB" \
            if workers else ""
        print(f"  {name}: {r['wall']:.1f} s, {len(corpus) / r['wall']:.0f} texts/s, peak PSS "
              f"{r['pss'] / 2**20:.0f} MB{extra}", flush=True)

    print("\n| engine | texts/s | wall time | peak PSS, all processes | vs s-t texts/s | "
          "vs s-t memory |\n|---|---|---|---|---|---|")
    ref = results.get("st")
    for key, r in results.items():
        vs = (f"{ref['wall'] / r['wall']:.2f}× | {r['pss'] / ref['pss']:.2f}×" if ref
              else "– | –")
        print(f"| {cases[key][0]} | {len(corpus) / r['wall']:.0f} | {r['wall']:.1f} s "
              f"| {r['pss'] / 2**20:.0f} MB | {vs} |")
    if "workers1" in results and "workers2" in results:
        w1, w2 = results["workers1"], results["workers2"]
        print(f"\n--workers 2 / --workers 1 throughput: {w1['wall'] / w2['wall']:.2f}×; "
              f"PSS added by the second worker: {(w2['pss'] - w1['pss']) / 2**20:.0f} MB")
    if "threads" in results and "workers2" in results:
        print(f"--workers 2 / threads throughput: "
              f"{results['threads']['wall'] / results['workers2']['wall']:.2f}×")
    if "threads" in results and "st" in results:
        from minisbert.index import read_index
        diff = np.abs(read_index(work / "idx").embeddings - np.load(work / "st.npy")).max()
        print(f"minisbert index vs sentence-transformers vectors: maxdiff = {diff:.1e}")

    if "ann" not in skip and "threads" in results:
        bench_ann(work / "idx", queries, args.model)
    print(f"\n(files in {work}; delete when done)")


def bench_ann(folder: Path, query_texts: list[str], model_folder: str) -> None:
    import numpy as np
    import minisbert
    from minisbert import ann
    from minisbert.index import read_index
    index = read_index(folder)
    queries = minisbert.load(model_folder).encode(query_texts)  # [1000, d]
    t0 = time.perf_counter()
    graph = ann.build(index)
    build = time.perf_counter() - t0
    for _ in range(2):  # warm: the index's pages in the page cache, as in a running service
        minisbert.semantic_search(queries[:100], index, top_k=10)

    def timed(search, qs):
        t = time.perf_counter()
        hits = search(qs)
        return hits, time.perf_counter() - t

    exact, exact_batch = timed(lambda q: minisbert.semantic_search(q, index, top_k=10), queries)
    one_exact = np.median([timed(lambda q: minisbert.semantic_search(q, index, top_k=10), q)[1]
                           for q in queries[:100]])
    print(f"\nApproximate search: usearch HNSW (connectivity {ann.CONNECTIVITY}, expansion "
          f"add {ann.EXPANSION_ADD}) over {index.count} vectors of {index.dim} dims, built in "
          f"{build:.1f} s; {len(queries)} held-out queries, top 10. Exact: semantic_search over "
          f"the index, {one_exact * 1e3:.2f} ms for one query (median of 100), "
          f"{exact_batch * 1e3:.0f} ms for all {len(queries)} in one call.")
    print("\n| expansion_search | recall@10 | one query (median) | speed-up | "
          f"{len(queries)} queries in one call | speed-up |\n|---|---|---|---|---|---|")
    for expansion in (32, 64, 128, 256):
        approx, ann_batch = timed(lambda q: graph.search(q, top_k=10, expansion_search=expansion),
                                  queries)
        recall = np.mean([len({h["corpus_id"] for h in a} & {h["corpus_id"] for h in e}) / 10
                          for a, e in zip(approx, exact)])
        one_ann = np.median([timed(lambda q: graph.search(q, top_k=10,
                                                           expansion_search=expansion), q[None])[1]
                             for q in queries[:100]])
        print(f"| {expansion} | {recall:.3f} | {one_ann * 1e3:.3f} ms | {one_exact / one_ann:.0f}× "
              f"| {ann_batch * 1e3:.0f} ms | {exact_batch / ann_batch:.1f}× |")


if __name__ == "__main__":
    main()
