"""Fetching a model folder from the Hugging Face hub over HTTP (finding one that is here
already: locate.py).

`download(name)` copies the files minisbert reads from `{endpoint}/{name}/resolve/{revision}/{file}`
(endpoint https://huggingface.co, or $HF_ENDPOINT) into <cache>/<name>, with urllib only:
modules.json, config_sentence_transformers.json (prompts), the Transformer's config and tokenizer
files, each module's config.json, and last the weights of the Transformer and of each Dense
module. Weights come in the first format the hub has, in weights.WEIGHT_FILES' order:
model.safetensors, else model.safetensors.index.json and the shards its weight_map names, else
pytorch_model.bin, else its index and shards. The small files come first so that a download
cut short lacks weights, which `locate.missing_files` notices, rather than an optional file it
cannot tell is missing. Module folders (from modules.json) and shard names (from an index) are remote
input that becomes file paths: both must stay inside the model folder (folder.parse_modules,
weights.read_weight_map). Each file goes to `<file>.part` first and is renamed when complete,
so a folder never holds a half file under its real name; an interrupted download resumes from
the `.part` with an HTTP Range request.

Each file's size is checked against Content-Length. A large file (one the hub stores with Git
LFS, such as model.safetensors, a shard or pytorch_model.bin) is also checked against the
SHA-256 the hub publishes for it: the `X-Linked-Etag` header on the `/resolve/` redirect, which
is the file's LFS object id, the SHA-256 of its content (`X-Linked-Size` gives its size). A file
that does not match is deleted, .part and all, and the error says so; the next run fetches it
from the start. Small files kept in git itself get no published SHA-256 (their ETag is a git
blob id), nor do files from a mirror that leaves the header out: those are checked by size only,
and the log line says which.

`download` first looks for the model where `locate.find_model` would: a folder there that
already holds every file `load` needs (see `locate.missing_files`) is used as it is, without
touching the network.

Left out: authentication (private and gated models), the hub's revision-keyed cache layout
(a folder holds one revision; `force=True` replaces it), and re-checking files already present.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import DownloadError
from .folder import parse_modules, read_json
from .locate import TOKENIZER_FILES, cache_dir, candidate_folders, missing_files
from .weights import WEIGHT_FILES, read_weight_map
from .progress import ProgressBar

DEFAULT_ENDPOINT = "https://huggingface.co"

# The transformer's files besides its weights, fetched after modules.json (which names the
# module folders) and in this order. True: required; False: a 404 is fine (each tokenizer needs
# only some of them).
TRANSFORMER_FILES = [("config.json", True), ("tokenizer_config.json", False),
                     ("special_tokens_map.json", False),
                     *((f, False) for files in TOKENIZER_FILES for f in files),
                     ("tokenizer.json", False), ("sentence_bert_config.json", False)]
_CHUNK = 1 << 20  # bytes read per network read


def _offline_help(name: str, revision: str, endpoint: str, reason) -> DownloadError:
    folder = Path("weights") / name.rstrip("/").rsplit("/", 1)[-1]
    return DownloadError(
        f"cannot reach {endpoint} ({reason}); this machine looks offline. Download the folder "
        f"elsewhere ({endpoint}/{name}/tree/{revision}: modules.json, config.json, "
        f"model.safetensors, the tokenizer files, 1_Pooling/config.json) and place it in "
        f"{folder} or {cache_dir() / name}.")


class _LinkedFileHeaders(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, and keeps the hub's X-Linked-Etag / X-Linked-Size.

    For a file stored with Git LFS (model.safetensors) the hub answers `/resolve/` with a
    redirect to its file storage, and that redirect carries `X-Linked-Etag: "<sha256>"` (the LFS
    object id: the SHA-256 of the file's content) and `X-Linked-Size: <bytes>`, the headers
    huggingface_hub reads too. The response at the end of the redirect does not repeat them."""

    def __init__(self):
        self.linked = {}

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        for key in ("X-Linked-Etag", "X-Linked-Size"):
            if headers.get(key) and key not in self.linked:
                self.linked[key] = headers[key]
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _published_sha256(headers: dict) -> str | None:
    """The SHA-256 the hub publishes for an LFS file, or None (a file kept in git itself, whose
    ETag is its git blob id, or a mirror that sends no X-Linked-Etag)."""
    etag = headers.get("X-Linked-Etag", "").strip()
    etag = etag[2:] if etag.startswith("W/") else etag
    etag = etag.strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def _fetch(url: str, target: Path, label: str) -> str | bool:
    """Download url to target via target.part, resuming a .part left by an earlier attempt.
    Returns False on 404, else how the file was checked ("SHA-256 checked" or "size checked");
    raises urllib/socket errors for the caller to explain, DownloadError on a bad file."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "minisbert",
                                                   "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    linked = _LinkedFileHeaders()
    try:
        response = urllib.request.build_opener(linked).open(request, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        if e.code == 416 and have:  # the .part is no prefix of the file any more: start over
            part.unlink()
            return _fetch(url, target, label)
        raise
    with response:
        if response.status != 206:  # the server sent the whole file (it ignored Range, or none)
            have = 0
        elif not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()  # a range other than the one asked for: do not splice it in
            return _fetch(url, target, label)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        sha256 = _published_sha256(linked.linked) or _published_sha256(response.headers)
        digest = hashlib.sha256()
        if have:  # the resumed file's hash covers the bytes already in the .part
            with open(part, "rb") as f:
                while block := f.read(_CHUNK):
                    digest.update(block)
        bar = ProgressBar(total, unit="B", desc=label, min_total=0)
        bar.update(have)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab" if have else "wb") as f:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:  # dropped mid-file: keep the .part
                raise DownloadError(f"{url}: download interrupted ({e}); run the same command "
                                    f"again to resume from {part.name}.") from None
        bar.close(clear=True)  # the caller prints the file's summary line in its place
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: the connection ended after {size} of {total} bytes; run the "
                            f"same command again to resume from {part.name}.")
    published_size = linked.linked.get("X-Linked-Size") or response.headers.get("X-Linked-Size")
    if published_size and published_size.isdigit() and int(published_size) != size:
        part.unlink()  # whatever it is, it is not the file the hub lists
        raise DownloadError(f"{label}: got {size:,} bytes, but the hub lists {int(published_size):,}"
                            f"; deleted {part.name}. Run the same command again to fetch it anew.")
    if sha256 is not None and digest.hexdigest() != sha256:
        part.unlink()  # a resume spliced onto a stale .part, or a corrupting proxy: start over
        raise DownloadError(f"{label}: SHA-256 {digest.hexdigest()} does not match the hub's "
                            f"{sha256}; deleted {part.name}. Run the same command again to "
                            "fetch it anew (if it fails again, something between here and the "
                            "hub alters the file).")
    os.replace(part, target)  # atomic: target is complete or absent
    return "SHA-256 checked" if sha256 is not None else \
        "size checked" if total is not None or published_size else "not checked"


def download(name: str, revision: str = "main", force: bool = False, endpoint: str | None = None,
             log=None, cache: Path | None = None) -> Path:
    """Fetch model `name` (e.g. "sentence-transformers/all-MiniLM-L6-v2") into the cache (or
    into `cache`, if given) and return its folder. Files already there are kept unless force
    is set."""
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    log = log if log is not None else sys.stderr
    name = name.strip("/")
    if not force:  # already here (weights/ or the cache) and complete: nothing to fetch
        for place in candidate_folders(name, cache):
            if place.is_dir() and not missing_files(place):
                print(f"{name} is already complete in {place}; nothing to download "
                      "(--force fetches it again into the cache).", file=log)
                return place
    folder = (cache_dir() if cache is None else Path(cache)) / name
    base = f"{endpoint}/{urllib.parse.quote(name)}/resolve/{urllib.parse.quote(revision, safe='')}"

    def get(file: str) -> bool:
        """Fetch one file; False if the hub has no such file (HTTP 404)."""
        target = folder / file
        if target.exists() and not force:
            print(f"{file}: already here", file=log)
            return True
        try:
            found = _fetch(f"{base}/{urllib.parse.quote(file)}", target, file)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):  # the hub answers 401 for missing repos, not only private ones
                raise DownloadError(
                    f"{endpoint}/{name}: HTTP {e.code}; no such public model. Check the name "
                    "(private and gated models are not supported: download them by hand and "
                    "pass the folder to --model).") from None
            raise DownloadError(f"{endpoint}/{name}/resolve/{revision}/{file}: HTTP {e.code} "
                                f"{e.reason}.") from None
        except urllib.error.URLError as e:
            raise _offline_help(name, revision, endpoint, e.reason) from None
        except (socket.timeout, ConnectionError) as e:
            raise _offline_help(name, revision, endpoint, e) from None
        if found:
            print(f"{file}: {target.stat().st_size:,} bytes, {found}", file=log)
        return found

    def get_weights(module_path: str) -> str | None:
        """Fetch a module's weights in the first format the hub has (WEIGHT_FILES' order); an
        index brings the shards its weight_map names. The weight file got, or None (all 404).
        A format already here is kept (unless force), as `load` would read it."""
        prefix = f"{module_path}/" if module_path else ""
        here = [f for f in WEIGHT_FILES if (folder / prefix / f).is_file()]
        for file in here[:1] if here and not force else WEIGHT_FILES:
            if not get(prefix + file):
                continue
            if file.endswith(".index.json"):
                # Shard names are remote input: read_weight_map refuses any that is not a plain
                # file name, so none can lead outside the folder.
                for shard in read_weight_map(folder / prefix / file, DownloadError):
                    if not get(prefix + shard):
                        raise DownloadError(f"{endpoint}/{name}: {prefix + file} names the shard "
                                            f"{shard}, but there is no {prefix + shard} at "
                                            f"revision {revision!r} (HTTP 404).")
            return prefix + file
        return None

    get("modules.json")
    modules = ()
    if (folder / "modules.json").exists():
        try:
            data = read_json(folder / "modules.json", kind=list, error=DownloadError)
        except DownloadError as e:
            raise DownloadError(f"{e} (With --force, every file is fetched anew.)") from None
        # Module paths become file paths here; parse_modules refuses those outside the folder.
        modules = parse_modules(data, folder / "modules.json", error=DownloadError)
    get("config_sentence_transformers.json")  # prompts; most folders have one, a 404 is fine
    # Old sentence-transformers folders keep the transformer in a subfolder (e.g. 0_BERT).
    transformer = next((m.path for m in modules if m.kind == "Transformer"), "")
    prefix = f"{transformer}/" if transformer else ""
    for file, required in TRANSFORMER_FILES:
        if not get(prefix + file) and required:
            if file == "config.json" and not modules:
                raise DownloadError(f"no model {name!r} at {endpoint} (revision {revision!r}): "
                                    "it has neither modules.json nor config.json (HTTP 404). "
                                    "Check the name.")
            raise DownloadError(f"{endpoint}/{name} has no {prefix + file} at revision "
                                f"{revision!r} (HTTP 404); minisbert needs it.")
    for m in modules:  # 1_Pooling/config.json, 2_Dense/config.json, 2_Normalize (a 404: no files)
        if m.path and m.path != transformer:
            get(f"{m.path}/config.json")
    if not any(all((folder / prefix / f).exists() for f in files) for files in TOKENIZER_FILES):
        sets = " or ".join(" + ".join(files) for files in TOKENIZER_FILES)
        raise DownloadError(f"{endpoint}/{name} has none of {sets}; minisbert cannot build its "
                            "tokenizer.")
    # The weights last (see the module docstring): the Transformer's, then each Dense module's.
    for module_path in [transformer, *(m.path for m in modules if m.kind == "Dense")]:
        if get_weights(module_path) is None:
            where = f"{module_path}/" if module_path else ""
            raise DownloadError(f"{endpoint}/{name} has no weights in {where or 'the folder'} at "
                                f"revision {revision!r}: none of {', '.join(WEIGHT_FILES)} "
                                "(HTTP 404). minisbert reads no other format (TensorFlow, Flax, "
                                "ONNX).")
    return folder
