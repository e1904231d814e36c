"""minisbert against sentence-transformers on a ModernBERT at gte-modernbert-base's real shape
(22 layers × 768, local windows of 128 tokens in two layers of three, random weights, a
ModernBERT-style BPE vocabulary trained on the catalogs), each engine in its own fresh
process, as scripts/bench.py runs them:

    python scripts/bench_families.py                 # the three cases below
    python scripts/bench_families.py --n 200 --repeat 1 --cases short   # a quick check

Cases: `short` English catalog messages; `512` messages joined into texts of ~512 tokens;
`8192` one text of ~8,192 tokens (the model's limit). Each prints texts/s and tokens/s, cold
start and peak RSS (ru_maxrss, weights included) of both engines, and minisbert's share of
this machine's float32 matmul peak (scripts/bench.py says how it is measured), with the CPU
and the BLAS kernels NumPy runs.

The folder is built once into weights/bench-gte-modernbert-base (tests/encoder_families.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (scripts/bench.py: workers, matmul peak, tables)

FOLDER = ROOT / "weights" / "bench-gte-modernbert-base"


def build_folder() -> Path:
    """gte-modernbert-base's layout with random weights, built once, in a process of its own:
    a child process starts with its parent's peak RSS (Linux keeps ru_maxrss across fork),
    so the workers' parent must never hold torch's model."""
    if not (FOLDER / "model.safetensors").exists():
        subprocess.run([sys.executable, __file__, "--build"], check=True)
    return FOLDER


def _build() -> None:
    import encoder_families
    staging = FOLDER.parent / "bench-gte-modernbert-base-staging"
    ours, _ = encoder_families.make_folders(staging, "gte-modernbert-base", "real",
                                            tokenizer_cache=staging / "tokenizers")
    ours.rename(FOLDER)  # the hub-style folder: sentence-transformers reads ModernBERT's too


def joined_texts(model, n: int, tokens: int) -> list[str]:
    """English messages glued together until each text is just under `tokens` tokens."""
    import corpus
    out, current, count = [], [], 0
    for message in corpus.english("ja") * 50:  # the catalogs hold ~1M tokens of English
        m = " ".join(message.split())
        k = len(model.tokenizer.tokenize(m))
        if k > tokens - 2:
            continue
        if count + k > tokens - 2:
            out.append(" ".join(current))
            current, count = [], 0
            if len(out) == n:
                break
        current.append(m)
        count += k
    return out


def texts_of(case: str, model, n: int) -> list[str]:
    import corpus
    if case == "short":
        texts = [t.strip() for t in corpus.english("ja") if t.strip()]
        return corpus.spread(texts, n)
    if case == "512":
        return joined_texts(model, max(1, n // 8), 512)
    if case == "8192":
        return joined_texts(model, 1, 8192)
    raise SystemExit(f"unknown case {case!r}")


def encoder_flops(lengths, cfg) -> float:
    """Multiply-adds ×2 on real tokens: per token and layer the four d×d projections and the
    three d×ff ones of the gated feed-forward; per text and layer q·kᵀ and weights·v over the
    keys each query reads (all of them in a global layer, 2·window + 1 in a local one)."""
    d, ff = cfg.hidden_size, cfg.intermediate_size
    total = 0.0
    for i in range(cfg.num_layers):
        w = cfg.layer_window(i)
        for n in lengths:
            keys = min(n, 2 * w + 1) if w else n
            total += n * 2 * (4 * d * d + 3 * d * ff) + 4 * n * keys * d
    return total


def run_case(folder: Path, case: str, n: int, threads: int, repeat: int) -> dict:
    import minisbert
    model = minisbert.load(folder)
    texts = texts_of(case, model, n)
    lengths = [len(model.tokenizer.encode(t)) for t in texts]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    try:
        peak, blas = bench.matmul_peak(threads)
        ours = bench.run_worker("minisbert", str(folder), f.name, threads, repeat)
        ref = bench.run_worker("sentence-transformers", str(folder), f.name, threads, repeat)
        peak = max(peak, bench.matmul_peak(threads)[0])
    finally:
        os.unlink(f.name)
    return {"texts": len(texts), "tokens": sum(lengths), "max_len": max(lengths),
            "flops": encoder_flops(lengths, model.cfg), "peak": peak, "peak_blas": blas,
            "ours": ours, "ref": ref}


LABELS = {"short": "gte-modernbert-base shape, short texts",
          "512": "gte-modernbert-base shape, 512-token texts",
          "8192": "gte-modernbert-base shape, one 8,192-token text"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(LABELS), choices=list(LABELS))
    ap.add_argument("--n", type=int, default=1000, help="short texts (512-token texts: n/8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        return _build()
    folder = build_folder()
    results = []
    for case in args.cases:
        repeat = 1 if case == "8192" else args.repeat
        r = run_case(folder, case, args.n, args.threads, repeat)
        bench.print_case(LABELS[case], r, args.threads)
        results.append((LABELS[case], r))
    bench.print_summary(results)


if __name__ == "__main__":
    main()
