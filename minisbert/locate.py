"""Where model folders live: what a `--model` argument means, and whether a folder is complete.

`find_model("sentence-transformers/all-MiniLM-L6-v2")` turns what a user typed into a folder:
  1. a folder path, used as is;
  2. weights/<name>, then weights/<last part of name> (weights/ in the current directory);
  3. <cache>/<name>, where `minisbert download` puts it. The cache is ~/.cache/minisbert,
     or $MINISBERT_CACHE.
When none exists, the error depends on what was typed. Hub names are `name` or `org/name`, so a
value that is absolute, starts with . or ~, holds a backslash or more than one /, or whose first
part is a folder here (weights/nope) is a path, and is reported as a missing folder; anything
else is a hub name, and the error says how to download it. Both list the models that are here.

`missing_files(folder)` says what keeps a folder from loading: a `.part` a download left, or a
file `load` needs that is absent or only a Git LFS pointer. download.py fetches a model over
HTTP into the cache, and uses both to decide whether there is anything to fetch.

Left out: the hub's own cache layout (~/.cache/huggingface; pass such a folder as a path) and
any network access (download.py has it all).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MinisbertError, ModelFileMissing
from .families import tokenizer_file_sets
from .folder import LFS_POINTER, read_modules
from .weights import WEIGHT_FILES, find_weights, read_weight_map

# The files a tokenizer is built from: a complete folder holds one of these sets (WordPiece,
# XLM-R's SentencePiece, RoBERTa's byte-level BPE).
TOKENIZER_FILES = tokenizer_file_sets()


def cache_dir() -> Path:
    """Where `minisbert download` puts models: $MINISBERT_CACHE, else ~/.cache/minisbert."""
    return Path(os.environ.get("MINISBERT_CACHE") or Path.home() / ".cache" / "minisbert")


def candidate_folders(name: str, cache: Path | None = None) -> list[Path]:
    """Where a hub name's folder may be, in the order `find_model` looks (`cache`: another
    cache than cache_dir())."""
    last = name.rstrip("/").rsplit("/", 1)[-1]
    cache = cache_dir() if cache is None else Path(cache)
    return list(dict.fromkeys([Path("weights") / name, Path("weights") / last, cache / name]))


def _is_path(name_or_path: str, only_explicit: bool = False) -> bool:
    """Is a `--model` value a folder path rather than a hub name? Hub names are `name` or
    `org/name`, so a path is: absolute, or starting with . or ~, or holding a backslash or
    more than one /, or (unless only_explicit) one whose first part is a folder here, such
    as weights/nope (hub names are looked up before this last test can say no)."""
    if (os.path.isabs(name_or_path) or name_or_path.startswith((".", "~"))
            or "\\" in name_or_path or name_or_path.strip("/").count("/") > 1):
        return True
    first = name_or_path.split("/", 1)[0]
    return not only_explicit and "/" in name_or_path.strip("/") and Path(first).is_dir()


def local_models() -> list[str]:
    """The models on this machine, as `--model` values: folders in weights/ (and one level
    down), then hub names in the cache. A model folder holds config.json or modules.json."""
    def is_model(folder: Path) -> bool:
        return (folder / "config.json").is_file() or (folder / "modules.json").is_file()

    found = []
    for root, as_name in ((Path("weights"), False), (cache_dir(), True)):
        for folder in sorted(root.glob("*/")) + sorted(root.glob("*/*/")) if root.is_dir() else []:
            if is_model(folder) and not (folder.parent != root and is_model(folder.parent)):
                found.append(folder.relative_to(root).as_posix() if as_name else str(folder))
    return list(dict.fromkeys(found))


def _here(name_or_path: str) -> str:
    """The models here, and how to pass one: the end of a "not found" message."""
    models = local_models()
    if not models:
        return f"There are no models in weights/ or {cache_dir()}."
    return (f"Models here: {', '.join(models)}; pass one with --model, e.g. --model "
            f"{models[0]}.")


def find_model(name_or_path: str, cache: Path | None = None) -> Path:
    """The model folder a `--model` argument means (see the module docstring); `cache`: look
    there instead of cache_dir()."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if not _is_path(name_or_path, only_explicit=True):
        for folder in candidate_folders(name_or_path, cache):
            if folder.is_dir():
                if any(folder.rglob("*.part")):
                    raise ModelFileMissing(f"the download of {name_or_path} into {folder} is "
                                           f"incomplete; run `minisbert download {name_or_path}` "
                                           "again to finish it.")
                return folder
    if _is_path(name_or_path):
        raise ModelFileMissing(f"{name_or_path}: no such model folder. {_here(name_or_path)}")
    tried = ", ".join(str(f) for f in candidate_folders(name_or_path, cache))
    raise ModelFileMissing(f"model {name_or_path!r} is not here (looked in {tried}); run "
                           f"`minisbert download {name_or_path}` or place the model folder "
                           f"in weights/. {_here(name_or_path)}")


def missing_files(folder: Path) -> list[str]:
    """What keeps `folder` from being a complete model folder, [] if nothing: a `.part` left by
    a download, modules.json that does not parse, or a file `load` needs that is absent: the
    Transformer's config.json and weights, its tokenizer files (one of TOKENIZER_FILES), the
    Pooling module's config.json when modules.json lists one, and each Dense module's config.json
    and weights. Weights are whichever of weights.WEIGHT_FILES `load` would read (with every
    shard its index names), and not a Git LFS pointer."""
    parts = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.part"))
    if parts:
        return parts
    try:
        pipeline = read_modules(folder)
    except MinisbertError as e:
        return [str(e)]
    transformer = pipeline.transformer_dir
    needed = [transformer / "config.json"]
    if pipeline.pooling_config is not None:
        needed.append(pipeline.pooling_config)
    dense = [pipeline.folder(m) for m in pipeline.modules if m.kind == "Dense"]
    needed += [where / "config.json" for where in dense]
    missing = [p.relative_to(folder).as_posix() for p in needed if not p.is_file()]
    for where in [transformer, *dense]:
        missing += _missing_weights(folder, where)
    if not any(all((transformer / f).is_file() for f in files) for files in TOKENIZER_FILES):
        missing.append(" or ".join(" + ".join(files) for files in TOKENIZER_FILES))
    return missing


def _missing_weights(root: Path, where: Path) -> list[str]:
    """What is missing of the weights `load` would read in module folder `where` (inside root):
    the weight file itself, a shard the index names, or the real file behind a Git LFS pointer."""
    def name(path: Path) -> str:
        return path.relative_to(root).as_posix()

    try:
        weights = find_weights(where)
    except ModelFileMissing:
        return [f"{name(where / WEIGHT_FILES[0])} (or {', '.join(WEIGHT_FILES[1:])})"]
    files = [weights]
    if weights.name.endswith(".index.json"):
        try:
            files = [where / shard for shard in read_weight_map(weights)]
        except MinisbertError as e:
            return [str(e)]
    missing = []
    for path in files:
        if not path.is_file():
            missing.append(name(path))
            continue
        with open(path, "rb") as f:
            if f.read(len(LFS_POINTER)) == LFS_POINTER:
                missing.append(f"{name(path)} (a Git LFS pointer)")
    return missing
