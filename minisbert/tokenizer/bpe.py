"""RoBERTa's tokenizer: GPT-2's byte-level byte-pair encoding (BPE).

From text to ids in four steps, as HuggingFace's RobertaTokenizer (the `tokenizers` ByteLevel
pre-tokenizer + BPE model that sentence-transformers runs) does them:
  1. literal special tokens ("<s>", "</s>", "<pad>", "<unk>", "<mask>") are cut out of the text;
     "<mask>" is usually configured to swallow the white space before it (`lstrip`);
  2. each remaining stretch gets a leading space if `add_prefix_space` is configured and it does
     not start with one, then is cut into words by GPT-2's pattern: a contraction ('s 't 're 've
     'm 'll 'd), or an optional space followed by a run of letters, of digits, or of other
     characters, or a run of white space;
  3. each word's UTF-8 bytes are spelled with one printable character per byte (`BYTE_TO_CHAR`),
     so the vocabulary never needs an unknown token: every byte is a symbol;
  4. the word's symbols are merged pair by pair, always the pair that comes first in merges.txt,
     until no listed pair is left; each final symbol is looked up in vocab.json.

GPT-2's pattern uses Unicode's letter and number classes (\\p{L}, \\p{N}), which Python's `re`
lacks, and `re`'s \\s is wider than Unicode's White_Space (it also matches U+001C..U+001F). So
each character is first replaced by a representative of its class, from `unicodedata` (`CLASS`:
any letter by "a", any number by "1", white space other than " " by "\\t", anything else by
"!"; ASCII stays itself, as the contractions and " " are spelled in ASCII), the pattern runs on
that string with ASCII classes, and its matches cut the original text at the same places. The
classes follow the Unicode version of the running Python (`unicodedata.unidata_version`): a
code point unassigned there but assigned in the reference's newer tables is the only place this
can part from the reference.

Surrogate code points are first repaired (`base.well_formed`). Threads may share the
tokenizer: tokenizing changes no state but the word cache, whose entries are the same whoever
fills them in.

Left out: pairs of texts, offsets, decoding, BPE dropout, `single_word` special tokens, added
(non-special) tokens, a vocabulary without all 256 byte symbols (a symbol missing from vocab.json
is dropped, as the reference does when no unknown token is configured).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from ..errors import ModelFileMissing, TokenizerError
from ..folder import check_not_lfs_pointer, read_json
from .base import CharTable, Tokenizer, read_token_config, token_content


def _byte_to_char() -> dict[int, str]:
    """GPT-2's table from the 256 byte values to 256 printable characters.

    Bytes that are already printable Latin-1 characters ("!".."~", "¡".."¬", "®".."ÿ") stand
    for themselves; the other 68 (control characters, space, soft hyphen, ...) are given the
    characters from U+0100 on, in byte order. So a space is "Ġ" (U+0120) and a newline "Ċ".
    Merges and vocabulary are written in these characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


BYTE_TO_CHAR = _byte_to_char()

# Unicode's White_Space property (what the reference's \s and `lstrip` mean).
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _representative(c: str) -> str:
    if c.isascii():
        return c
    if c in WHITE_SPACE:
        return "\t"
    return {"L": "a", "N": "1"}.get(unicodedata.category(c)[0], "!")


CLASS = CharTable(_representative)

# GPT-2's pattern,  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# on class representatives. At each position the alternatives are tried in order; together they
# match every character, so the matches are the words. `\s+(?!\S)` leaves the last space of a
# run of white space to start the next word (" world" after "  ").
_S = "\t-\r "  # ASCII White_Space: tab, newline, vertical tab, form feed, carriage return, space
GPT2_PATTERN = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_S}A-Za-z0-9]+"
                          rf"|[{_S}]+(?![^{_S}])|[{_S}]+")


def gpt2_words(text: str) -> list[str]:
    """The text cut into GPT-2's pre-tokenization words."""
    words, start = [], 0
    for length in map(len, GPT2_PATTERN.findall(text.translate(CLASS))):
        words.append(text[start:start + length])
        start += length
    return words


def read_vocab_and_merges(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]], Path]:
    """The vocabulary {symbol: id} and the merges [(left, right), ...] in merge order, from
    vocab.json + merges.txt, or else from tokenizer.json (transformers 5 saves only that one);
    and the file they came from, for error messages."""
    if (folder / "vocab.json").is_file() or not (folder / "tokenizer.json").is_file():
        return (_read_vocab_json(folder / "vocab.json"), _read_merges_txt(folder / "merges.txt"),
                folder / "merges.txt")
    path = folder / "tokenizer.json"
    model = read_json(path, error=TokenizerError).get("model") or {}
    vocab, merges = model.get("vocab"), model.get("merges")
    if model.get("type") != "BPE" or not isinstance(vocab, dict) or not isinstance(merges, list):
        raise TokenizerError(f"{path} does not hold a BPE model (model.type \"BPE\" with a vocab "
                             "object and a merges list); the file is corrupt, download it again.")
    # Merges are "left right" strings in older files, [left, right] lists in newer ones.
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    bad = next((m for m in pairs if len(m) != 2), None)
    if bad is not None:
        raise TokenizerError(f"{path}: the merge {bad!r} is not a pair of symbols; the file is "
                             "corrupt, download it again.")
    return vocab, pairs, path


def _read_vocab_json(path: Path) -> dict[str, int]:
    """vocab.json: {symbol: id}."""
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. A byte-level BPE model folder needs "
                               "vocab.json and merges.txt (or tokenizer.json); download the "
                               "complete folder.")
    vocab = read_json(path, error=TokenizerError)
    if not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(f"{path} is not a vocabulary: it should map each symbol to its id "
                             "({\"Ġthe\": 5, ...}); the file is corrupt, download it again.")
    return vocab


def _read_merges_txt(path: Path) -> list[tuple[str, str]]:
    """merges.txt: an optional "#version" line, then one pair per line, "Ġ t", in merge order."""
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. A byte-level BPE model folder needs "
                               "vocab.json and merges.txt; download the complete folder.")
    raw = path.read_bytes()
    check_not_lfs_pointer(path, raw, TokenizerError)
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise TokenizerError(f"{path} is not UTF-8 text; the file is corrupt, download it "
                             "again.") from None
    merges = []
    for n, line in enumerate(lines, 1):
        if line.startswith("#version") or not line:
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise TokenizerError(f"{path}, line {n}: {line[:60]!r} is not a pair of symbols "
                                 "separated by one space; the file is corrupt, download it again.")
        merges.append((pair[0], pair[1]))
    return merges


class BytePairEncoding:
    """Merge the symbols of one word, one pair at a time, until no listed pair is left.

    "Ġlowest" spelled Ġ l o w e s t: of the adjacent pairs, the one that comes first in the
    merges list is merged (the leftmost, if it occurs twice), say "e" "s" -> "es"; then again
    among the new pairs, and so on. The final symbols are vocabulary entries (each merge's
    result is one, checked at load).
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], source: Path):
        for a, b in merges:
            if a + b not in vocab:
                raise TokenizerError(f"{source}: the merge {a!r} + {b!r} makes {a + b!r}, which "
                                     "the vocabulary lacks; the two do not belong together.")
        self.vocab = vocab
        self.rank = {pair: i for i, pair in enumerate(merges)}
        self.never = len(merges)  # the rank of a pair that is not in the list

    def merge(self, word: str) -> tuple[int, ...]:
        """The ids of a word spelled in byte symbols."""
        get, never = self.rank.get, self.never
        symbols = list(word)
        ranks = [get(p, never) for p in zip(symbols, symbols[1:])]  # of symbols[i], symbols[i+1]
        while ranks and (best := min(ranks)) != never:
            i = ranks.index(best)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
            # Only the pairs that touch the new symbol change: recompute those two (or one).
            lo = max(i - 1, 0)
            ranks[lo:i + 2] = [get(p, never) for p in zip(symbols[lo:i + 2], symbols[lo + 1:i + 2])]
        return tuple(self.vocab[s] for s in symbols if s in self.vocab)


SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")


def special_tokens(folder: Path, config: dict,
                   vocab: dict[str, int]) -> tuple[dict[str, dict], dict[str, str]]:
    """The special tokens, {content: {"id", "lstrip", "rstrip"}}, and their roles,
    {"cls_token": "<s>", ...}.

    Their names come from tokenizer_config.json and special_tokens_map.json (`bos_token`,
    `mask_token`, ...), their ids from vocab.json. Whether one swallows the white space before
    (`lstrip`) or after it (`rstrip`) is stored in several places, depending on the version of
    transformers that saved the folder; the first that gives flags for the token counts:
    tokenizer.json's `added_tokens`, tokenizer_config.json's `added_tokens_decoder`, then a
    token written as a dict in special_tokens_map.json, then in tokenizer_config.json."""
    special_map = read_token_config(folder / "special_tokens_map.json")
    added = read_json(folder / "tokenizer.json", error=TokenizerError).get("added_tokens") or []
    added = added if isinstance(added, list) else []
    sources = [{t.get("content"): t for t in added if isinstance(t, dict)},
               {t.get("content"): t for t in (config.get("added_tokens_decoder") or {}).values()},
               {token_content(t): t for t in special_map.values() if isinstance(t, dict)},
               {token_content(t): t for t in config.values() if isinstance(t, dict)}]
    names = {key: token_content(special_map.get(key) or config.get(key)) for key in SPECIAL_KEYS}
    # RoBERTa's defaults for the three the tokenizer cannot do without.
    names = {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
             **{key: name for key, name in names.items() if name}}
    tokens = {}
    for content in names.values():
        if content not in vocab:
            raise TokenizerError(f"{folder}: the special token {content!r} that the tokenizer "
                                 "configuration names is not in the vocabulary.")
        flags = next((s[content] for s in sources if content in s), {})
        tokens[content] = {"id": vocab[content], "lstrip": bool(flags.get("lstrip")),
                           "rstrip": bool(flags.get("rstrip"))}
    return tokens, names


class RobertaTokenizer(Tokenizer):
    pair_separators, second_type = 2, 0  # <s> A </s></s> B </s>, as XLM-R's

    def __init__(self, folder: Path, config: dict, max_length: int, lowercase: bool = False):
        """config: tokenizer_config.json; lowercase: sentence_bert_config.json's do_lower_case."""
        super().__init__(max_length, lowercase)
        vocab, merges, source = read_vocab_and_merges(folder)
        self.bpe = BytePairEncoding(vocab, merges, source)
        self.add_prefix_space = bool(config.get("add_prefix_space", False))
        self.special_tokens, names = special_tokens(folder, config, vocab)
        self.special_ids = {content: t["id"] for content, t in self.special_tokens.items()}
        self.cls_id, self.sep_id, self.pad_id = (
            vocab[names[key]] for key in ("cls_token", "sep_token", "pad_token"))
        # A special token with `lstrip` takes the white space before it along ("a <mask>" is
        # "a" + "<mask>", not "a" + "Ġ" + "<mask>"); with `rstrip` the white space after it.
        space = f"[{re.escape(WHITE_SPACE)}]*"
        alternatives = [(space if t["lstrip"] else "") + re.escape(content) +
                        (space if t["rstrip"] else "")
                        for content, t in sorted(self.special_tokens.items(),
                                                 key=lambda kv: len(kv[0]), reverse=True)]
        self.specials = re.compile("|".join(alternatives)) if alternatives else None
        # Words repeat a lot in real text; remembering their ids makes tokenizing ~5x faster.
        self.word_ids = lru_cache(maxsize=1 << 16)(self._word_ids)

    def token_ids(self) -> dict[str, int]:
        return {**self.bpe.vocab, **super().token_ids()}

    def _word_ids(self, word: str) -> tuple[int, ...]:
        # Latin-1 decoding gives one character per byte, numbered as the byte.
        return self.bpe.merge(word.encode("utf-8").decode("latin-1").translate(BYTE_TO_CHAR))

    def tokenize(self, text: str) -> list[int]:
        ids = []
        for piece, is_special in self.pieces(text):
            if is_special:
                ids.append(self.special_ids[piece.strip(WHITE_SPACE)])
                continue
            if self.add_prefix_space and not piece.startswith(" "):
                piece = " " + piece  # so the first word is spelled as after a space, "Ġword"
            for word in gpt2_words(piece):
                ids.extend(self.word_ids(word))
        return ids
