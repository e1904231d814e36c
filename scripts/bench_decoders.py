"""Benchmark the decoder embedders at their real shapes: Qwen3-Embedding-0.6B and
EmbeddingGemma-300m, random weights in one bfloat16 folder each, minisbert against
sentence-transformers (float32, as minisbert computes) loading the same folder.

    python scripts/bench_decoders.py                 # both models, the real shapes
    python scripts/bench_decoders.py --tiny          # a check that the script runs

Prints the machine and BLAS kernels, then for each model and engine: texts/s on short texts
and on 512-token texts, single-query latency, and peak resident memory (each engine runs in
its own process, so the peaks are its own), side by side with the ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]


def build(kind: str, folder: Path, tiny: bool) -> Path:
    import decoder_families as fam
    if kind == "qwen3":
        keys = {} if tiny else {k: fam.QWEN3_EMBEDDING_0_6B[k] for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "intermediate_size")}
        return fam.make_qwen3_embedding(folder, dtype="bfloat16", std=0.03,
                                        max_seq_length=512, **keys)
    keys = {} if tiny else {k: fam.EMBEDDINGGEMMA_300M[k] for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "head_dim", "intermediate_size", "sliding_window", "query_pre_attn_scalar",
        "layer_types")}
    return fam.make_embeddinggemma(folder, dtype="bfloat16", std=0.03, max_seq_length=512,
                                   dense_width=64 if tiny else 3072, **keys)


def texts(n_short: int, n_long: int) -> tuple[list[str], list[str]]:
    import corpus
    english = corpus.english("ja")
    short = corpus.spread([t for t in english if 20 < len(t) < 120], n_short)
    long = [" ".join(english[i:i + 200]) for i in range(0, 200 * n_long, 200)]  # > 512 tokens
    return short, long


def run_engine(engine: str, folder: str, texts_file: str, repeat: int) -> dict:
    """In this process: load, then time short texts, long texts and one query, best of
    `repeat` runs each. The texts come from a file, so reading the catalogs does not count in
    this process's peak memory."""
    import warnings
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    short, long = json.loads(Path(texts_file).read_text())
    if engine == "minisbert":
        import minisbert
        model = minisbert.load(folder)
    else:
        import torch
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(folder, device="cpu", model_kwargs={"dtype": torch.float32})
    model.encode(short[:1])
    out = {"cold start s": round(time.perf_counter() - started, 2)}
    model.encode(short[:4])  # warm up

    def best(f) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return min(times)

    for name, batch in (("short", short), ("long", long)):
        out[f"{name} texts/s"] = round(len(batch) / best(lambda b=batch: model.encode(b)), 2)
    out["single query ms"] = round(best(lambda: [model.encode(q) for q in short[:5]]) / 5 * 1000, 1)
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across
    # exec, and the parent held the models it built
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    out["peak RSS MB"] = round(int(hwm.split()[1]) / 1024)
    return out


ROWS = (("short texts/s", "throughput, short texts", False),
        ("long texts/s", "throughput, 512-token texts", False),
        ("single query ms", "one short query, ms", True),
        ("cold start s", "cold start (import, load, one text), s", True),
        ("peak RSS MB", "peak RSS, MB", True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small models: check the script")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--short", type=int, default=256, help="short texts (default 256)")
    parser.add_argument("--long", type=int, default=16, help="512-token texts (default 16)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs (default 2)")
    parser.add_argument("--models", nargs="+", default=["qwen3", "gemma3"],
                        choices=["qwen3", "gemma3"])
    args = parser.parse_args()
    if args.engine:  # the child process
        print(json.dumps(run_engine(args.engine, args.folder, args.texts, args.repeat)))
        return
    import numpy
    import sentence_transformers
    import torch
    from bench import machine
    from minisbert import threads
    print(f"{datetime.date.today()}, {machine()}; NumPy {numpy.__version__}, "
          f"{threads.describe_blas()} vs sentence-transformers {sentence_transformers.__version__}, "
          f"torch {torch.__version__}; {args.short} short texts, {args.long} texts cut at 512 "
          f"tokens, best of {args.repeat}; both engines read the same bfloat16 file")
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts(args.short, args.long)))
        for kind in args.models:
            folder = build(kind, Path(tmp) / kind, args.tiny)
            size = (folder / "model.safetensors").stat().st_size / 2**20
            results = {}
            for engine in ("minisbert", "sentence-transformers"):
                result = subprocess.run(
                    [sys.executable, __file__, "--engine", engine, "--folder", str(folder),
                     "--texts", str(texts_file), "--repeat", str(args.repeat)],
                    capture_output=True, text=True, check=True)
                results[engine] = json.loads(result.stdout.strip().splitlines()[-1])
            ours, theirs = results["minisbert"], results["sentence-transformers"]
            print(f"\n{NAMES[kind]}: model.safetensors {size:.0f} MB (bfloat16)\n")
            print("| | minisbert | sentence-transformers | ratio |\n|---|---:|---:|---:|")
            for key, label, lower_is_better in ROWS:
                a, b = ours[key], theirs[key]
                ratio = (a / b if key == "peak RSS MB" else b / a) if lower_is_better else a / b
                print(f"| {label} | {a} | {b} | {ratio:.2f}"
                      f"{'' if key == 'peak RSS MB' else '×'} |")
    print("\n(ratio: minisbert's speed over sentence-transformers', higher is better; for peak "
          "RSS, minisbert's over sentence-transformers', lower is better)")


NAMES = {"qwen3": "Qwen3-Embedding-0.6B's shape", "gemma3": "EmbeddingGemma-300m's shape"}


if __name__ == "__main__":
    main()
