"""tokenizer.json's post-processors: the last stage, the text's ids -> the ids the model sees.

Every post-processor minisbert reads becomes one `Template`: the special tokens around one
sequence (A) or a pair (A, B), each item with its token type id. For BERT,

    single  [CLS]:0  A:0  [SEP]:0
    pair    [CLS]:0  A:0  [SEP]:0  B:1  [SEP]:1

    TemplateProcessing  the template as the file writes it
    BertProcessing      the one above, from its cls and sep tokens
    RobertaProcessing   <s> A </s> and <s> A </s> </s> B </s>, every type id 0
    ByteLevel           only moves offsets: for ids, nothing (A alone; A then B with type 1)
    Sequence            the above in order (at most one that adds tokens)

Truncation happens before the template is applied, on the text's ids, so the special tokens
are always kept: a single text keeps its first max_length - (tokens the template adds) ids; a
pair is cut "longest first", as the Rust library does (`base.truncate_pair`).
"""

from __future__ import annotations

from ..errors import TokenizerError
from .normalizers import build


class Template:
    """single, pair: lists of items, each (ids, type_id) for special tokens or ("A" | "B",
    type_id) for a sequence."""

    def __init__(self, single: list, pair: list):
        self.single, self.pair = single, pair
        self.added_single = sum(len(ids) for ids, _ in single if ids not in ("A", "B"))
        self.added_pair = sum(len(ids) for ids, _ in pair if ids not in ("A", "B"))

    def apply_single(self, a: list[int]) -> list[int]:
        """The ids of sequence a (the common case, without type ids)."""
        ids = []
        for item, _ in self.single:
            ids += a if item == "A" else item
        return ids

    def apply(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        """(ids, token type ids) of sequence a, or of the pair a, b."""
        ids, types = [], []
        for item, type_id in self.single if b is None else self.pair:
            part = a if item == "A" else b if item == "B" else item
            ids += part
            types += [type_id] * len(part)
        return ids, types

    def first_special(self) -> int | None:
        """The id the template puts first ([CLS], <s>), if it puts a special token first."""
        item = self.single[0][0] if self.single else "A"
        return None if item in ("A", "B") or not item else item[0]

    def last_special(self) -> int | None:
        item = self.single[-1][0] if self.single else "A"
        return None if item in ("A", "B") or not item else item[-1]


IDENTITY = Template([("A", 0)], [("A", 0), ("B", 1)])


def _template(spec) -> Template:
    specials = spec.get("special_tokens") or {}

    def items(template):
        out = []
        for item in template:
            if "Sequence" in item:
                seq = item["Sequence"]
                if seq["id"] not in ("A", "B"):
                    raise TokenizerError(f"its template names the sequence {seq['id']!r}, "
                                         "not A or B")
                out.append((seq["id"], seq.get("type_id", 0)))
            else:
                token = item["SpecialToken"]
                if token["id"] not in specials:
                    raise TokenizerError(f"its template uses the special token {token['id']!r}, "
                                         "which its special_tokens do not define")
                out.append((list(specials[token["id"]]["ids"]), token.get("type_id", 0)))
        return out
    return Template(items(spec["single"]), items(spec["pair"]))


def _bert(spec) -> Template:
    (_, sep), (_, cls) = spec["sep"], spec["cls"]
    return Template([([cls], 0), ("A", 0), ([sep], 0)],
                    [([cls], 0), ("A", 0), ([sep], 0), ("B", 1), ([sep], 1)])


def _roberta(spec) -> Template:
    (_, sep), (_, cls) = spec["sep"], spec["cls"]
    return Template([([cls], 0), ("A", 0), ([sep], 0)],
                    [([cls], 0), ("A", 0), ([sep], 0), ([sep], 0), ("B", 0), ([sep], 0)])


def _sequence(spec) -> Template:
    adding = [t for t in (build_post_processor(p) for p in spec["processors"])
              if t is not IDENTITY]
    if len(adding) > 1:
        raise TokenizerError("its post-processor Sequence holds more than one processor that "
                             "adds tokens, which minisbert does not implement")
    return adding[0] if adding else IDENTITY


BUILDERS = {
    "TemplateProcessing": _template,
    "BertProcessing": _bert,
    "RobertaProcessing": _roberta,
    "ByteLevel": lambda s: IDENTITY,
    "Sequence": _sequence,
}


def build_post_processor(spec: dict | None) -> Template:
    """The template a tokenizer.json `post_processor` object describes; null adds nothing."""
    if spec is None:
        return IDENTITY
    return build(spec, BUILDERS, "post-processor")

