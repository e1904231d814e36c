"""tokenizer.json's models: the third stage, one pre-tokenized word -> its token ids.

    WordPiece  greedy longest match from the left, continuation pieces marked "##" (base.py)
    BPE        the word's characters merged pair by pair, the pair that comes first in the
               merges list each time; unknown characters as bytes (<0x41>) or an unknown token
    Unigram    the segmentation whose pieces' log-probabilities sum highest (Viterbi)
    WordLevel  the whole word looked up, or the unknown token

Each has `tokenize(word) -> tuple of ids`, cached per word: real text repeats its words, and a
cache hit costs one dict lookup. `build_model` reads the JSON object.

Left out: BPE dropout (a training-time randomization; minisbert always takes the merges),
offsets, and decoding.
"""

from __future__ import annotations

import heapq
from functools import lru_cache

from ..errors import TokenizerError
from .base import WordPiece
from .normalizers import build

CACHE = 1 << 16  # words remembered per model


def byte_token(b: int) -> str:
    """How SentencePiece-style vocabularies spell a raw byte: 0x41 -> "<0x41>"."""
    return f"<0x{b:02X}>"


def _check_unknown(vocab, unk_token, kind):
    if unk_token is not None and unk_token not in vocab:
        raise TokenizerError(f"its {kind} model names the unknown token {unk_token!r}, which "
                             "its vocabulary lacks")


class WordPieceModel:
    def __init__(self, vocab: dict[str, int], unk_token="[UNK]", continuing_subword_prefix="##",
                 max_input_chars_per_word=100):
        _check_unknown(vocab, unk_token, "WordPiece")
        self.vocab = vocab
        wordpiece = WordPiece(vocab, unk_token, max_input_chars_per_word, continuing_subword_prefix)
        self.tokenize = wordpiece.split  # already cached


class BPE:
    """Byte-pair encoding over token ids.

    A word starts as one symbol per character ("##" before all but the first if
    `continuing_subword_prefix`, "</w>" after the last if `end_of_word_suffix`). A character the
    vocabulary lacks becomes its UTF-8 bytes "<0xE2>" ... (`byte_fallback`, when all of them are
    in the vocabulary), else the unknown token (consecutive ones fused into one if `fuse_unk`),
    else nothing. Then, while some adjacent pair is in the merges list, the pair listed first
    (the leftmost occurrence of it) becomes the symbol it makes. With `ignore_merges`, a word
    that is itself in the vocabulary is taken whole.
    """

    def __init__(self, vocab: dict[str, int], merges: list, unk_token=None,
                 continuing_subword_prefix=None, end_of_word_suffix=None, fuse_unk=False,
                 byte_fallback=False, ignore_merges=False):
        _check_unknown(vocab, unk_token, "BPE")
        self.vocab = vocab
        self.unk_id = None if unk_token is None else vocab[unk_token]
        self.prefix, self.suffix = continuing_subword_prefix or "", end_of_word_suffix or ""
        self.fuse_unk, self.byte_fallback, self.ignore_merges = fuse_unk, byte_fallback, ignore_merges
        # (left id, right id) -> (rank, id of the merged symbol). The right symbol's
        # continuation prefix is dropped in the merged one: "##a" + "##b" -> "##ab".
        self.merges = {}
        for rank, merge in enumerate(merges):
            left, right = merge.split(" ") if isinstance(merge, str) else merge
            merged = left + right[len(self.prefix):]
            for symbol in (left, right, merged):
                if symbol not in vocab:
                    raise TokenizerError(f"its BPE merge {left!r} + {right!r} needs {symbol!r}, "
                                         "which its vocabulary lacks")
            self.merges[vocab[left], vocab[right]] = (rank, vocab[merged])
        self.tokenize = lru_cache(maxsize=CACHE)(self._tokenize)

    def symbols(self, word: str) -> list[int]:
        """The word's starting symbols, before any merge."""
        vocab, ids, unknown = self.vocab, [], False  # unknown: an unknown token is pending
        last = len(word) - 1
        for i, c in enumerate(word):
            s = (self.prefix if i else "") + c + (self.suffix if i == last else "")
            if s in vocab:
                if unknown:
                    ids.append(self.unk_id)
                    unknown = False
                ids.append(vocab[s])
                continue
            if self.byte_fallback:
                as_bytes = [vocab.get(byte_token(b)) for b in s.encode("utf-8")]
                if None not in as_bytes:
                    ids += as_bytes  # (a pending unknown token stays pending, as in Rust)
                    continue
            if self.unk_id is not None:
                if unknown and not self.fuse_unk:
                    ids.append(self.unk_id)
                unknown = True
        if unknown:
            ids.append(self.unk_id)
        return ids

    def _tokenize(self, word: str) -> tuple[int, ...]:
        if self.ignore_merges and word in self.vocab:
            return (self.vocab[word],)
        ids = self.symbols(word)
        if len(ids) > self.LONG:
            return tuple(self.merge_long(ids))
        get, never = self.merges.get, (float("inf"), -1)
        ranks = [get(pair, never) for pair in zip(ids, ids[1:])]  # of ids[i], ids[i + 1]
        while ranks:
            best = min(ranks)
            if best is never:
                break
            i = ranks.index(best)  # the leftmost occurrence of the first-listed pair
            ids[i:i + 2] = [best[1]]
            # Only the pairs that touch the new symbol change: recompute those two (or one).
            lo = max(i - 1, 0)
            ranks[lo:i + 2] = [get(pair, never) for pair in zip(ids[lo:i + 2], ids[lo + 1:i + 2])]
        return tuple(ids)

    LONG = 64  # symbols; longer words are merged with a heap (whole texts, when nothing splits)

    def merge_long(self, ids: list[int]) -> list[int]:
        """The same merges as `_tokenize`, in O(n log n) rather than O(n²): every adjacent pair
        that has a merge waits in a heap by (rank, position); the symbols form a linked list.
        A popped pair whose symbols have changed since it was pushed is skipped."""
        get, n = self.merges.get, len(ids)
        after = list(range(1, n + 1))  # the next live symbol's position (n: none)
        before = list(range(-1, n - 1))
        alive = [True] * n
        heap = [(m[0], i, m[1]) for i, pair in enumerate(zip(ids, ids[1:]))
                if (m := get(pair)) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i, merged = heapq.heappop(heap)
            j = after[i]
            if not alive[i] or j >= n or get((ids[i], ids[j])) != (rank, merged):
                continue  # stale: one of its symbols was merged into another since
            ids[i], alive[j] = merged, False
            after[i] = after[j]
            if after[j] < n:
                before[after[j]] = i
            for left in (before[i], i):  # the two pairs the new symbol is part of
                right = after[left] if left >= 0 else n
                if left >= 0 and right < n and (m := get((ids[left], ids[right]))) is not None:
                    heapq.heappush(heap, (m[0], left, m[1]))
        return [s for s, live in zip(ids, alive) if live]


class Unigram:
    """The best segmentation under a unigram language model (SentencePiece's unigram).

    Every piece has a score, its log-probability; a segmentation scores the sum of its pieces'.
    Viterbi: walking the word from the left, best[end] holds the best segmentation of
    word[:end] found so far, (score, start of its last piece, that piece's id); each position
    extends best[start] by every piece that starts there. A character that no one-character
    piece covers may also be taken as the unknown piece, scored the lowest score minus 10.
    Ties keep the segmentation found first (earlier start, then shorter piece), as in Rust.
    Then the path is read back from the end, runs of unknown pieces joined into one;
    with `byte_fallback` an unknown run becomes its UTF-8 bytes ("<0xE2>" ...).
    """

    UNKNOWN_PENALTY = 10.0

    def __init__(self, vocab: list, unk_id=None, byte_fallback=False):
        self.pieces = {}  # piece -> (id, score)
        for i, (piece, score) in enumerate(vocab):
            self.pieces[piece] = (i, float(score))
        if unk_id is not None and not (isinstance(unk_id, int) and 0 <= unk_id < len(vocab)):
            raise TokenizerError(f"its Unigram model's unk_id {unk_id!r} is not the index of a "
                                 f"piece of its vocabulary ({len(vocab)} pieces)")
        self.unk_id, self.byte_fallback = unk_id, byte_fallback
        self.vocab = {piece: i for piece, (i, _) in self.pieces.items()}
        self.unknown_score = min((s for _, s in self.pieces.values()), default=0.0) \
            - self.UNKNOWN_PENALTY
        # Every prefix of every piece: the walk from a position stops at the first substring
        # that begins no piece (the Rust library walks a trie instead).
        self.prefixes = {piece[:n] for piece in self.pieces for n in range(1, len(piece) + 1)}
        self.tokenize = lru_cache(maxsize=CACHE)(self._tokenize)

    def best_pieces(self, word: str) -> list[tuple[str, bool]]:
        """Viterbi: the best segmentation, as (piece, is_unknown) from left to right."""
        pieces, prefixes, n = self.pieces, self.prefixes, len(word)
        best = [None] * (n + 1)  # best[end] = (score, start, id)
        best[0] = (0.0, 0, None)
        for start in range(n):
            base = best[start][0]
            single = False  # does a one-character piece cover word[start]?
            end = start + 1
            while end <= n and (piece := word[start:end]) in prefixes:
                entry = pieces.get(piece)
                if entry is not None:
                    score = base + entry[1]
                    if best[end] is None or score > best[end][0]:
                        best[end] = (score, start, entry[0])
                    single = single or end == start + 1
                end += 1
            if not single:
                if self.unk_id is None:
                    raise TokenizerError(f"the Unigram model has no unknown piece for "
                                         f"{word[start]!r}, which its vocabulary lacks")
                score = base + self.unknown_score
                if best[start + 1] is None or score > best[start + 1][0]:
                    best[start + 1] = (score, start, self.unk_id)
        out, end, unknown_end = [], n, None
        while end > 0:  # read the path back; join each run of unknown pieces
            _, start, piece_id = best[end]
            if piece_id == self.unk_id:
                unknown_end = unknown_end or end
            else:
                if unknown_end is not None:
                    out.append((word[end:unknown_end], True))
                    unknown_end = None
                out.append((word[start:end], False))
            end = start
        if unknown_end is not None:
            out.append((word[:unknown_end], True))
        out.reverse()
        return out

    def _tokenize(self, word: str) -> tuple[int, ...]:
        ids = []
        for piece, _ in self.best_pieces(word):
            if piece in self.vocab:
                ids.append(self.vocab[piece])
                continue
            if self.byte_fallback:
                as_bytes = [self.vocab.get(byte_token(b)) for b in piece.encode("utf-8")]
                if None not in as_bytes:
                    ids += as_bytes
                    continue
            ids.append(self.unk_id)
        return tuple(ids)


class WordLevel:
    def __init__(self, vocab: dict[str, int], unk_token=None):
        _check_unknown(vocab, unk_token, "WordLevel")
        self.vocab = vocab
        self.unk_id = None if unk_token is None else vocab[unk_token]

    def tokenize(self, word: str) -> tuple[int, ...]:
        i = self.vocab.get(word, self.unk_id)
        if i is None:
            raise TokenizerError(f"the WordLevel model has no unknown token for {word!r}")
        return (i,)


def _vocab_dict(spec) -> dict[str, int]:
    vocab = spec["vocab"]
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(f"its {spec.get('type')} vocab is not an object of token ids")
    return vocab


BUILDERS = {
    "WordPiece": lambda s: WordPieceModel(_vocab_dict(s), s.get("unk_token", "[UNK]"),
                                          s.get("continuing_subword_prefix", "##"),
                                          s.get("max_input_chars_per_word", 100)),
    "BPE": lambda s: BPE(_vocab_dict(s), s["merges"], s.get("unk_token"),
                         s.get("continuing_subword_prefix"), s.get("end_of_word_suffix"),
                         s.get("fuse_unk", False), s.get("byte_fallback", False),
                         s.get("ignore_merges", False)),
    "Unigram": lambda s: Unigram(s["vocab"], s.get("unk_id"), s.get("byte_fallback", False)),
    "WordLevel": lambda s: WordLevel(_vocab_dict(s), s.get("unk_token")),
}


def build_model(spec: dict):
    """The model a tokenizer.json `model` object describes. Files written by old versions of
    the library leave out its "type": the other keys say which it is."""
    if isinstance(spec, dict) and "type" not in spec:
        if "merges" in spec:
            spec = {**spec, "type": "BPE"}
        elif isinstance(spec.get("vocab"), list):
            spec = {**spec, "type": "Unigram"}
        elif "continuing_subword_prefix" in spec or "max_input_chars_per_word" in spec:
            spec = {**spec, "type": "WordPiece"}
        else:
            spec = {**spec, "type": "WordLevel"}
    return build(spec, BUILDERS, "model")
