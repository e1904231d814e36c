"""Build the random-weight models the benchmark needs, at the real models' shapes.

    python scripts/make_bench_models.py          # -> weights/bench-xlmr-base, weights/bench-ja-base

Speed and memory do not depend on the weights' values, only on shapes and tokens, so:
  bench-xlmr-base  paraphrase-multilingual-mpnet-base-v2's shapes: XLM-R 12 × 768, 12 heads,
                   vocab 250,002, 514 positions, max_seq_length 128 (a 1.1 GB safetensors file),
                   with the tests' SentencePiece model (21 languages of the gettext catalogs,
                   tests/fixtures/xlmr);
  bench-ja-base    sonoisa/sentence-bert-base-ja-mean-tokens-v2's shapes: BERT 12 × 768,
                   vocab 32,000, MeCab (ipadic) + WordPiece, max_seq_length 80.
Needs the test dependencies (torch, transformers, sentencepiece, fugashi, ipadic).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import japanese_folder  # noqa: E402
import tokenizer_fixtures  # noqa: E402
import xlmr_folder  # noqa: E402

BASE = dict(hidden=768, layers=12, heads=12, intermediate=3072)


def main():
    out = ROOT / "weights"
    xlmr = out / "bench-xlmr-base"
    if not (xlmr / "model.safetensors").exists():
        xlmr_folder.make_xlmr_folder(xlmr, tokenizer_fixtures.SP_MODEL, **BASE, vocab_size=250002,
                                     max_seq_length=128, std=0.02)
        print(f"wrote {xlmr}")
    ja = out / "bench-ja-base"
    if not (ja / "model.safetensors").exists():
        vocab = tokenizer_fixtures.JA_VOCAB.read_text(encoding="utf-8").splitlines()
        japanese_folder.make_folder(ja, vocab, **BASE, std=0.02)
        # sentence-transformers 6.2 cannot load a BertJapaneseTokenizer folder that says
        # do_lower_case (it tries to set a read-only attribute), so the benchmark copy does not
        # lowercase; that changes no shapes and hardly any token counts.
        cfg = ja / "sentence_bert_config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "do_lower_case": False}))
        print(f"wrote {ja}")


if __name__ == "__main__":
    main()
