"""Reading a model folder: its JSON files, the check for Git LFS pointers, and modules.json.

Every module that opens a file of a model folder (the model loader, the tokenizer front ends,
the index fingerprint, the downloader) reads it through here, so a missing, broken or
not-yet-fetched file is reported the same way wherever it is met, and all of them agree on
which subfolder holds which module.

A sentence-transformers folder is a HuggingFace model folder plus a pipeline in modules.json:
    [{"type": "sentence_transformers.models.Transformer", "path": ""},
     {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
     {"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"}]
`read_modules` turns it into a `ModelFolder`. Safetensors files are read by weights.py.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import ConfigError, ModelFileMissing, UnsupportedModelError

# What a file cloned without `git lfs` holds instead of its content: a ~130-byte text pointer.
LFS_POINTER = b"version https://git-lfs"


def check_not_lfs_pointer(path: Path, head: bytes, error: type[Exception]) -> None:
    """Raise `error` if a file starting with `head` is a Git LFS pointer, not the real file."""
    if head.startswith(LFS_POINTER):
        raise error(f"{path} is a Git LFS pointer, not the file itself; run `git lfs pull` in "
                    "the model folder, or download the file again.")


def read_json(path: Path, *, required: bool = False, kind: type = dict,
              error: type[Exception] = ConfigError):
    """A model folder's JSON file, which must hold a `kind` (dict: an object, list: an array).
    A missing file is {} (or None for a list) unless required; a broken one raises `error`."""
    if not path.is_file():
        if required:
            raise ModelFileMissing(f"{path}: no such file. Every model folder needs it; download "
                                   "the complete folder.")
        return {} if kind is dict else None
    raw = path.read_bytes()
    check_not_lfs_pointer(path, raw, error)
    try:
        data = json.loads(raw.decode("utf-8"))
    # ValueError: JSONDecodeError, UnicodeDecodeError, and numbers of more than 4300 digits;
    # RecursionError: arrays or objects nested a thousand deep.
    except (ValueError, RecursionError) as e:
        raise error(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]}); "
                    "download it again.") from None
    if not isinstance(data, kind):
        want = "an object" if kind is dict else "an array"
        raise error(f"{path} holds a JSON {type(data).__name__} where {want} belongs; "
                    "download it again.")
    return data


# ---------------------------------------------------------------------------- modules.json

# The module kinds minisbert runs. A kind is the last part of a module's type in modules.json
# ("sentence_transformers.models.Pooling" -> "Pooling"). To run a new kind, add it here and
# give model.load its step.
KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
# Kinds a pipeline may hold more than once (distiluse has one Dense, some models stack two).
REPEATABLE = ("Dense",)


@dataclass(frozen=True)
class Module:
    """One step of the pipeline, as modules.json lists it."""
    kind: str  # "Transformer", "Pooling", "Dense", "Normalize", ...
    type: str  # the full type, e.g. "sentence_transformers.models.Pooling"
    path: str  # its folder inside the model folder, "/"-separated; "" is the folder itself


@dataclass(frozen=True)
class ModelFolder:
    """A model folder's pipeline: which modules run, in which order, from which subfolders."""
    root: Path
    modules: tuple[Module, ...]  # in the order they run
    modules_json: Path | None  # None: a plain HuggingFace folder, the Transformer alone

    def folder(self, module: Module) -> Path:
        return self.root / module.path

    def find(self, kind: str) -> Module | None:
        return next((m for m in self.modules if m.kind == kind), None)

    @property
    def transformer_dir(self) -> Path:
        """The folder of config.json, model.safetensors and the tokenizer files."""
        return self.folder(self.find("Transformer"))

    @property
    def pooling_config(self) -> Path | None:
        """1_Pooling/config.json, or None when there is no Pooling module (mean pooling)."""
        pooling = self.find("Pooling")
        return self.folder(pooling) / "config.json" if pooling else None

    @property
    def normalize(self) -> bool:
        return self.find("Normalize") is not None


def _escapes(path: str) -> bool:
    """Does a module path lead outside the model folder (absolute, or through "..")?"""
    return (path.startswith(("/", "\\")) or bool(PureWindowsPath(path).drive)
            or ".." in re.split(r"[/\\]", path))


def parse_modules(data, source: Path, error: type[Exception] = ConfigError) -> tuple[Module, ...]:
    """The modules of modules.json's content `data` (read from `source`), in order. Refuses a
    module folder outside the model folder: module paths become file paths when the folder is
    read or downloaded. Unknown kinds are kept (read_modules decides what runs)."""
    if not isinstance(data, list):
        raise error(f"{source} holds a JSON {type(data).__name__} where an array belongs; "
                    "download it again.")
    modules = []
    for i, entry in enumerate(data):
        if not (isinstance(entry, dict) and isinstance(entry.get("type"), str)
                and isinstance(entry.get("path", ""), str)):
            raise error(f"{source}: entry {i} is {reprlib.repr(entry)}, not an object with a \"type\" and a "
                        "\"path\" string; download it again.")
        path = entry.get("path", "")
        if _escapes(path):
            raise error(f"{source}: entry {i} names the folder {path!r}, outside the model "
                        "folder; refusing it.")
        kind = entry["type"].rsplit(".", 1)[-1]
        modules.append(Module(kind, entry["type"], "/".join(PurePosixPath(path).parts)))
    return tuple(modules)


def read_modules(root: str | os.PathLike) -> ModelFolder:
    """Read a model folder's modules.json into its pipeline.

    A folder without modules.json is a plain HuggingFace folder: its pipeline is the Transformer
    in the folder itself, and `modules_json` is None (model.load then pools by mean, as
    sentence-transformers does). Old sentence-transformers folders keep the Transformer in a
    subfolder (e.g. 0_BERT); modules.json says where. A module kind minisbert does not run, a
    kind other than Dense listed twice, or no Transformer at all is an UnsupportedModelError.
    Whether the modules fit together in their order (widths, token or sentence vectors) is
    model.load's check, which reads their configs.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelFileMissing(f"{root}: no such model folder. Pass the folder that holds "
                               "config.json and model.safetensors (see weights/README.md).")
    source = root / "modules.json"
    data = read_json(source, kind=list)
    if data is None:
        return ModelFolder(root, (Module("Transformer", "Transformer", ""),), None)
    modules = parse_modules(data, source)
    kinds = [m.kind for m in modules]
    unknown = [m.type for m in modules if m.kind not in KINDS]
    counts = Counter(kinds)  # one pass: a modules.json of 20,000 entries is read at once
    repeated = sorted(k for k, n in counts.items() if n > 1 and k not in REPEATABLE)
    if unknown or repeated or "Transformer" not in kinds:
        if unknown:
            problem = f"minisbert cannot run {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}"
        elif repeated:
            problem = f"{' and '.join(repeated)} appear more than once"
        else:
            problem = "there is no Transformer module"
        listed = kinds if len(kinds) <= 10 else [*kinds[:10], f"… {len(kinds)} in all"]
        raise UnsupportedModelError(
            f"{source} lists the modules {listed}: {problem}. minisbert runs a Transformer, then "
            "optionally Pooling, any number of Dense, and Normalize.")
    return ModelFolder(root, modules, source)
