"""`minisbert verify`: the parity test for your own model folder.

Runs the folder through minisbert and through the reference implementation on the same texts,
and reports how far apart the two are against the tolerances minisbert's own tests hold:

    token ids        identical, text by text
    vectors          normalized, at most 1e-5 apart in any component (max abs difference)

plus the smallest cosine between the two vectors of a text and how many texts have the same
10 nearest neighbours (among the texts) on both sides, which is what a search would show.

The reference is sentence-transformers, if installed. Without it, transformers (with torch)
computes the token ids and token vectors, and minisbert's own pooling, Dense and Normalize run
on them: that checks the tokenizer and the encoder, where nearly all differences arise, but
not the modules after them.

Texts are stripped before both sides see them: minisbert strips each text, sentence-transformers
6 does not, and for SentencePiece tokenizers a leading space changes the ids.

Left out: pairs of texts, and folders the reference itself cannot load.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import pooling
from .errors import MissingDependencyError, TruncationWarning
from .folder import read_json, read_modules
from .model import SentenceTransformer, load

TOLERANCE = 1e-5  # max abs difference of normalized vectors
NEIGHBOURS = 10
SAMPLE = Path(__file__).parent / "data" / "verify_sample.txt"
INSTALL = ("pip install sentence-transformers   (it brings torch and transformers; for a "
           "Japanese folder also: pip install fugashi ipadic)")


def sample_texts() -> list[str]:
    """The built-in sample: real sentences in several languages, several of them translations
    of one another, so the nearest neighbours mean something."""
    return [line.strip() for line in SAMPLE.read_text(encoding="utf-8").splitlines()
            if line.strip()]


@dataclass
class Side:
    """One implementation's results on the texts."""
    name: str                # e.g. "sentence-transformers 6.2.0"
    prompt: str              # what it put before each text
    ids: list[list[int]]     # the ids its encoder saw, per text
    vectors: np.ndarray      # [n, dim], normalized


@dataclass
class Report:
    texts: list[str]
    ours: Side
    ref: Side
    k: int = NEIGHBOURS
    differing_ids: list[int] = field(init=False)   # texts whose ids differ
    diff: np.ndarray = field(init=False)           # [n] max abs difference per text
    cosine: np.ndarray = field(init=False)         # [n] cosine of the two vectors of a text
    same_neighbours: int = field(init=False)       # texts with the same k nearest neighbours

    def __post_init__(self):
        a, b = self.ours.vectors.astype(np.float64), self.ref.vectors.astype(np.float64)
        self.differing_ids = [i for i, (x, y) in enumerate(zip(self.ours.ids, self.ref.ids))
                              if x != y]
        if a.shape != b.shape:  # e.g. a Dense module one side does not run
            self.diff = np.full(len(self.texts), np.inf)
            self.cosine = np.full(len(self.texts), -1.0)
            self.same_neighbours = 0
            return
        self.diff = np.abs(a - b).max(axis=1) if a.size else np.zeros(len(a))
        self.cosine = (a * b).sum(1) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        self.k = min(self.k, len(a) - 1)
        self.same_neighbours = int(sum(x == y for x, y in zip(_neighbours(a, self.k),
                                                              _neighbours(b, self.k))))

    @property
    def ok(self) -> bool:
        return (not self.differing_ids and self.ours.prompt == self.ref.prompt
                and bool(np.all(self.diff <= TOLERANCE)))

    def table(self, show: int = 3) -> str:
        n = len(self.texts)
        dims = "x".join(map(str, self.ours.vectors.shape[1:])) or "0"
        rows = [f"minisbert against {self.ref.name}: {n} texts, {dims} dims",
                f"  token ids identical        {n - len(self.differing_ids)} / {n}"]
        for i in self.differing_ids[:1]:
            rows += [f"    first differing text #{i}: {self.texts[i]!r}",
                     f"      minisbert  {self.ours.ids[i]}",
                     f"      reference  {self.ref.ids[i]}"]
        if self.ours.prompt != self.ref.prompt:
            rows.append(f"  prompt differs             minisbert {self.ours.prompt!r}, "
                        f"reference {self.ref.prompt!r}")
        if self.ours.vectors.shape != self.ref.vectors.shape:
            rows.append(f"  vector shapes differ       minisbert {self.ours.vectors.shape}, "
                        f"reference {self.ref.vectors.shape}")
        else:
            rows += [f"  max abs difference         {self.diff.max(initial=0):.2e}   "
                     f"(normalized vectors; tolerance {TOLERANCE:.0e})",
                     f"  min cosine                 {self.cosine.min(initial=1):.8f}",
                     f"  same top-{self.k} neighbours     {self.same_neighbours} / {n}"]
            for i in [i for i in np.argsort(-self.diff) if self.diff[i] > TOLERANCE][:show]:
                rows.append(f"    differs by {self.diff[i]:.2e}: #{i} {self.texts[i]!r}")
        rows.append("  verdict                    " + (
            "OK: within tolerance" if self.ok else "FAILED: outside tolerance"))
        return "\n".join(rows)


def _neighbours(v: np.ndarray, k: int) -> list[frozenset]:
    """Each row's k nearest other rows by cosine (as sets: ties may come in either order)."""
    if k < 1:
        return [frozenset()] * len(v)
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
    sims = unit @ unit.T  # [n, n]
    np.fill_diagonal(sims, -np.inf)
    return [frozenset(row) for row in np.argsort(-sims, axis=1, kind="stable")[:, :k]]


# ---------------------------------------------------------------------------- the two sides

def run_minisbert(model: SentenceTransformer, texts: list[str],
                  prompt_name: str | None = None) -> Side:
    prompt = model.resolve_prompt(prompt_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # both sides cut alike
        vectors = model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True)
    return Side("minisbert", prompt, model.tokenize(texts, prompt=prompt),
                vectors.reshape(len(texts), -1))


def reference_available() -> str | None:
    """Which reference is installed: "sentence-transformers", "transformers", or None."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return None
    return "sentence-transformers" if importlib.util.find_spec("sentence_transformers") \
        else "transformers"


def _quiet(transformers) -> None:
    """No load reports or progress bars from transformers around the table."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _tokenizer_kwargs(transformer_dir: Path) -> dict:
    """transformers 5 gives BertJapaneseTokenizer the unidic_lite dictionary when the folder
    names none; the models were trained with ipadic, which minisbert uses, so ask for it."""
    config = read_json(transformer_dir / "tokenizer_config.json")
    if (config.get("tokenizer_class") or "").startswith("BertJapaneseTokenizer") and \
            not (config.get("mecab_kwargs") or {}).get("mecab_dic"):
        return {"mecab_kwargs": {**(config.get("mecab_kwargs") or {}), "mecab_dic": "ipadic"}}
    return {}


def run_sentence_transformers(folder: Path, texts: list[str],
                              prompt_name: str | None = None) -> Side:
    import sentence_transformers as st
    import transformers
    _quiet(transformers)
    kwargs = _tokenizer_kwargs(read_modules(folder).transformer_dir)
    model = st.SentenceTransformer(str(folder), device="cpu",
                                   **({"processor_kwargs": kwargs} if kwargs else {}))
    if prompt_name is not None:
        prompt = model.prompts[prompt_name]
    else:
        prompt = model.prompts.get(model.default_prompt_name, "") if model.default_prompt_name \
            else ""
    ids = []
    for start in range(0, len(texts), 32):
        features = model.preprocess(texts[start:start + 32], prompt=prompt or None)
        for row, mask in zip(features["input_ids"], features["attention_mask"]):
            ids.append(row[mask.bool()].tolist())
    vectors = model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True,
                           convert_to_numpy=True)
    return Side(f"sentence-transformers {st.__version__}", prompt or "", ids,
                np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))


def run_transformers(folder: Path, model: SentenceTransformer, texts: list[str],
                     prompt_name: str | None = None) -> Side:
    """transformers' tokenizer and encoder; then this model's own pooling and modules."""
    import torch
    import transformers
    _quiet(transformers)
    where = str(read_modules(folder).transformer_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(where, **_tokenizer_kwargs(Path(where)))
    encoder = transformers.AutoModel.from_pretrained(where).eval()
    prompt = model.resolve_prompt(prompt_name)
    lower = model.tokenizer.lowercase_input  # sentence_bert_config.json's do_lower_case

    def ids_of(text):
        return tokenizer(text.lower() if lower else text, truncation=True,
                         max_length=model.max_seq_length)["input_ids"]

    ids = [ids_of(prompt + text) for text in texts]
    prompt_length = 0
    if prompt and not model.pooling.include_prompt:  # as sentence-transformers counts it
        alone = ids_of(prompt)
        prompt_length = len(alone) - (alone[-1] in tokenizer.all_special_ids)
    vectors = []
    for start in range(0, len(ids), 32):
        batch = ids[start:start + 32]
        width = max(map(len, batch))
        padded = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch])
        with torch.no_grad():
            tokens = encoder(input_ids=padded, attention_mask=mask).last_hidden_state
        vectors.append(model.head(tokens.numpy(), mask.numpy(), prompt_length))
    out = pooling.normalize(np.concatenate(vectors)) if vectors else np.zeros((0, model.width))
    return Side(f"transformers {transformers.__version__} (pooling and modules: minisbert's)",
                prompt, ids, out.astype(np.float32))


def verify(folder: str | Path, texts: list[str] | None = None, *, prompt_name: str | None = None,
           model: SentenceTransformer | None = None) -> Report:
    """Compare minisbert (`model`, else the folder loaded) with the reference on `texts`
    (default: the built-in sample). MissingDependencyError when no reference is installed."""
    folder = Path(folder)
    texts = [t.strip() for t in (sample_texts() if texts is None else texts)]
    reference = reference_available()
    if reference is None:
        raise MissingDependencyError("minisbert verify compares with the reference "
                                     f"implementation, which is not installed: {INSTALL}")
    model = model or load(folder)
    ours = run_minisbert(model, texts, prompt_name)
    if reference == "sentence-transformers":
        try:
            return Report(texts, ours, run_sentence_transformers(folder, texts, prompt_name))
        except Exception as e:  # noqa: BLE001 - a folder it cannot load; fall back, and say so
            reason = (str(e).splitlines() or [""])[0][:200]
            note = f"; sentence-transformers could not run the folder ({type(e).__name__}: {reason})"
    else:
        note = ""
    ref = run_transformers(folder, model, texts, prompt_name)
    ref.name += note
    return Report(texts, ours, ref)
