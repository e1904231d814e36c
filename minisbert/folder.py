"""Reading a model folder's small files: JSON settings, and the check for Git LFS pointers.

Every module that opens a file of a model folder (the model loader, the tokenizer front ends,
the index fingerprint, the downloader) reads it through here, so a missing, broken or
not-yet-fetched file is reported the same way wherever it is met.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError, ModelFileMissing

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
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e}); download it again.") from None
    if not isinstance(data, kind):
        want = "an object" if kind is dict else "an array"
        raise error(f"{path} holds a JSON {type(data).__name__} where {want} belongs; "
                    "download it again.")
    return data
