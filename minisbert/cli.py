"""The `minisbert` command: semantic search over a text file, saved indexes, model download.

    minisbert search -i input.txt                 ask questions in a loop; q, ｑ or EOF ends it
    minisbert search -i input.txt -p "question"   answer one question and exit
    minisbert encode -i input.txt -o my-index     embed the file once (streamed, resumable) ...
    minisbert search --index my-index             ... and search it without embedding it again
    minisbert search -i input.txt --rerank CROSS  ... reordering the top candidates with a reranker
    minisbert rerank --model CROSS -q QUERY -i input.txt   score every text against a query
    minisbert download NAME                       fetch a model folder from the Hugging Face hub
    minisbert serve --model M [--model M2 ...]    an OpenAI-compatible embeddings server
    minisbert verify FOLDER                       compare a folder's results with sentence-transformers

Texts are the file's non-blank lines, or with `--split sentences` its sentences (SPLIT_HELP);
`-i -` reads them from standard input. Input that looks binary is refused (textfile.binary_reason).
`--model` takes a folder or a hub name (see locate.find_model). Every user error (a missing or undecodable
file, an unknown model, no network) is one line on stderr and exit status 1, never a traceback;
usage errors exit with 2, as argparse does. A warning (texts cut at max_seq_length) is one line too.

`encode` reads its input as a stream (a file, or - for standard input; text lines or JSON lines)
and resumes after an interruption: see streaming.py.

`search --rerank CROSS` retrieves the bi-encoder's top max(k, --rerank-candidates) texts (50 by
default), scores each against the question with the cross-encoder CROSS and prints the best k;
`rerank` scores every text of the file, no bi-encoder involved.

Left out: PDF/HTML input.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import download as hub
from . import locate
from .cross_encoder import CrossEncoder
from .errors import InputFileError, MinisbertError, ModelFileMissing
from .index import check_model, model_identity, read_index
from .model import load
from .util import semantic_search
from .streaming import Source, encode_corpus
from .textfile import BINARY_SHARE, read_texts

DEFAULT_MODEL = "sentence-transformers/paraphrase-multilingual-mpnet-base-v2"
PROMPT = "User (press q to exit): "
QUIT = {"q", "ｑ"}  # ｑ: what a Japanese input method types for q
RERANK_CANDIDATES = 50  # search --rerank: the bi-encoder's top texts the cross-encoder reorders

# ---------------------------------------------------------------------------- commands

def _model_folder_and_name(model_arg: str) -> tuple[Path, str | None]:
    """The folder, and the hub name to record in an index (None when given a folder)."""
    folder = locate.find_model(model_arg)
    return folder, None if Path(model_arg).expanduser().is_dir() else model_arg


def _default_or_given(model_arg: str | None) -> Path:
    """The folder of --model, or of the default model when --model is not given."""
    if model_arg is not None:
        return locate.find_model(model_arg)
    try:
        return locate.find_model(DEFAULT_MODEL)
    except ModelFileMissing as e:
        raise ModelFileMissing(f"no --model given, and the default {e}") from None


def search(args) -> int:
    if args.index:
        index = read_index(args.index)
        corpus, texts_of = index, index.texts_of  # read from disk a block at a time
        model_arg = args.model
        if model_arg is None:  # the model that made the index: where it was, else by name
            recorded = index.model.get("path")
            model_arg = recorded if recorded and Path(recorded).is_dir() else index.model["name"]
        folder, name = _model_folder_and_name(model_arg)
        model = load(folder)
        check_model(index, model_identity(model, folder, name))
        model.resolve_prompt(args.prompt_name)  # an unknown name fails now, not at the question
    else:
        texts = read_texts(args.input, args.split, args.encoding)
        model = load(_default_or_given(args.model))
        model.resolve_prompt(args.prompt_name)  # an unknown name fails now, not at the question
        corpus = model.encode(texts, prompt_name=args.corpus_prompt_name)
        texts_of = lambda rows: {r: texts[r] for r in rows}  # noqa: E731

    reranker = CrossEncoder(locate.find_model(args.rerank)) if args.rerank else None

    def answer(query: str) -> None:
        query_vector = model.encode(query, prompt_name=args.prompt_name)
        wanted = max(args.top_k, args.rerank_candidates) if reranker else args.top_k
        hits = semantic_search(query_vector, corpus, top_k=wanted)[0]
        found = texts_of([hit["corpus_id"] for hit in hits])
        if reranker is None:
            for hit in hits:
                print(f"Text: {found[hit['corpus_id']]} (Similarity:{hit['score']:.3f})",
                      flush=True)
            return
        # The cross-encoder reads the question with each candidate and reorders them.
        candidates = [found[hit["corpus_id"]] for hit in hits]
        for hit in reranker.rank(query, candidates, top_k=args.top_k):
            print(f"Text: {candidates[hit['corpus_id']]} (Score:{hit['score']:.3f})", flush=True)

    if args.prompt is not None:
        answer(args.prompt)
        return 0
    while True:
        try:
            query = input(PROMPT).strip()
        except EOFError:
            print()  # end the prompt's line, so the shell prompt starts on its own line
            return 0
        if query.lower() in QUIT:
            if not sys.stdin.isatty():  # a terminal echoed "q" and Enter; a pipe echoes nothing
                print()
            return 0
        if query:
            answer(query)


def rerank(args) -> int:
    """Every text of the file scored against the query by the cross-encoder, best first."""
    texts = read_texts(args.input, args.split, args.encoding)
    model = CrossEncoder(locate.find_model(args.model))
    for hit in model.rank(args.query, texts, top_k=args.top_k):
        print(f"Text: {texts[hit['corpus_id']]} (Score:{hit['score']:.3f})", flush=True)
    return 0


def encode(args) -> int:
    if args.id_field and not args.field:
        raise InputFileError("--id-field needs --field: ids come from JSON lines.")
    source = Source(args.input, field=args.field, id_field=args.id_field, split=args.split,
                    encoding=args.encoding, skip_bad_lines=args.skip_bad_lines)
    folder, name = _model_folder_and_name(args.model)
    model = load(folder)
    done = encode_corpus(source, args.output, model, folder, name, chunk_texts=args.chunk_texts,
                         workers=args.workers, prompt_name=args.prompt_name)
    resumed = f", {done.resumed_at} of them from an earlier run" if done.resumed_at else ""
    skipped = f"; skipped {done.bad_lines} bad lines" if done.bad_lines else ""
    print(f"Wrote {done.count} texts x {model.dim} dims{resumed} (model "
          f"{done.identity['name']}, fingerprint {done.identity['fingerprint']}) to "
          f"{args.output}{skipped}", file=sys.stderr)
    return 0


def download(args) -> int:
    print(hub.download(args.name, revision=args.revision, force=args.force))
    return 0


def serve(args) -> int:
    from .serve import run  # Starlette and Uvicorn load only for this command (the serve extra)
    return run(args.model, host=args.host, port=args.port, api_key=api_key(args),
               max_wait_ms=args.batch_wait_ms, max_queued=args.queue_size,
               read_timeout=args.read_timeout)


def api_key(args) -> str | None:
    """The server's API key: --api-key-file's, else --api-key, else $MINISBERT_API_KEY_FILE's,
    else $MINISBERT_API_KEY; None for no key. A key that is empty (or only white space) is an
    error, not "no key": with it, `Authorization: Bearer ` would be accepted."""
    if args.api_key_file:
        where, key = f"--api-key-file {args.api_key_file}", _key_file(args.api_key_file)
    elif args.api_key is not None:
        where, key = "--api-key", args.api_key
    elif os.environ.get("MINISBERT_API_KEY_FILE"):
        path = os.environ["MINISBERT_API_KEY_FILE"]
        where, key = f"$MINISBERT_API_KEY_FILE ({path})", _key_file(path)
    elif "MINISBERT_API_KEY" in os.environ:
        where, key = "$MINISBERT_API_KEY", os.environ["MINISBERT_API_KEY"]
    else:
        return None
    if not key.strip():
        raise InputFileError(f"{where} gives an empty API key, which would let every client "
                             "in; give a key, or unset it to serve without one.")
    if key != key.strip() or any(c.isspace() for c in key):
        raise InputFileError(f"{where}: the API key has white space in it, which an "
                             "'Authorization: Bearer KEY' header cannot carry.")
    return key


def _key_file(path: str) -> str:
    """A key file's text, without the newline an editor or `echo` ends it with."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as e:
        raise InputFileError(f"{path}: cannot read the API key file ({e.strerror}).") from None
    if len(raw) > 4096:
        raise InputFileError(f"{path}: the API key file is over 4 KiB; it should hold the key "
                             "alone.")
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: the API key file is not UTF-8 text.") from None


def verify(args) -> int:
    """Print minisbert's and the reference's results side by side; 0 only within tolerance."""
    from . import verify as parity  # imports nothing beyond NumPy until it runs the reference
    texts = read_texts(args.texts, args.split, args.encoding) if args.texts \
        else parity.sample_texts()
    report = parity.verify(locate.find_model(args.folder), texts[:args.n],
                           prompt_name=args.prompt_name)
    print(report.table())
    return 0 if report.ok else 1


# ---------------------------------------------------------------------------- arguments

# What --help says about the rules above; the documentation quotes the same words.
SPLIT_HELP = ("one text per non-blank line (default), or per sentence: a sentence ends after "
              "。．！？ and after . ! ? followed by a space or the line's end (so 3.14 and "
              "example.com stay whole), with any closing quotes or brackets; a sentence never "
              "runs across lines")
INDEX_HELP = ("search an index made by `minisbert encode` instead of -i. It is searched with the "
              "model that made it (found where it was made, else by its hub name); --model may "
              "name that same model elsewhere, and any other model is refused, since its "
              "vectors are not comparable with the index's (the model's weights are "
              "fingerprinted)")

def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 86400:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return seconds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minisbert", description="Sentence-BERT in NumPy: semantic "
                                "search over a text file, in any language the model knows.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_input_options(cmd, required):
        cmd.add_argument("-i", "--input", metavar="FILE", required=required,
                         help="text file, or - for standard input; a file that looks binary "
                         f"(a NUL, or over {BINARY_SHARE * 100:.0f}%% control characters) is refused")
        cmd.add_argument("--split", choices=("lines", "sentences"), default="lines",
                         help=SPLIT_HELP)
        cmd.add_argument("--encoding", help="the file's encoding (default: UTF-8, with or "
                         "without BOM), e.g. cp932, latin-1")

    s = commands.add_parser("search", help="find the texts nearest to a question",
                            description="Embed a file's texts (or open an index), then answer "
                            "questions: interactively, or once with -p.")
    add_input_options(s, required=False)
    s.add_argument("--index", metavar="FOLDER", help=INDEX_HELP)
    s.add_argument("--model", metavar="M", help=f"model folder or hub name (default: "
                   f"{DEFAULT_MODEL}; with --index: the index's model). A hub name is looked up "
                   "in weights/ and the cache; a value with a path's shape (/x, ./x, ~/x, or "
                   "weights/x when weights/ is a folder here) must be an existing folder")
    s.add_argument("-p", "--prompt", metavar="TEXT", help="answer this one question and exit")
    s.add_argument("-k", "--top-k", type=_positive, default=1, metavar="K",
                   help="how many texts to show per question (default: 1)")
    s.add_argument("--prompt-name", metavar="NAME", help="the model's prompt to put before each "
                   "question, e.g. query (default: the model's default prompt, if any)")
    s.add_argument("--corpus-prompt-name", metavar="NAME", help="the model's prompt to put "
                   "before each text of -i, e.g. passage (default: the model's default prompt)")
    s.add_argument("--rerank", metavar="CROSS", help="a cross-encoder (reranker) folder or hub "
                   "name: reorder the bi-encoder's top candidates by its scores")
    s.add_argument("--rerank-candidates", type=_positive, default=RERANK_CANDIDATES,
                   metavar="N", help="with --rerank: how many of the bi-encoder's top texts the "
                   f"reranker scores; at least -k (default: {RERANK_CANDIDATES})")
    s.set_defaults(run=search)

    r = commands.add_parser("rerank", help="score a file's texts against a query with a "
                            "cross-encoder", description="Score every text of a file against "
                            "the query with a cross-encoder (reranker) and print them, best "
                            "first.")
    add_input_options(r, required=True)
    r.add_argument("--model", metavar="CROSS", required=True, help="cross-encoder folder or hub "
                   "name, e.g. cross-encoder/ms-marco-MiniLM-L6-v2")
    r.add_argument("-q", "--query", metavar="TEXT", required=True, help="the query")
    r.add_argument("-k", "--top-k", type=_positive, metavar="K",
                   help="how many texts to show (default: all)")
    r.set_defaults(run=rerank)

    e = commands.add_parser("encode", help="embed a file's texts once and save them as an index",
                            description="Embed the texts of a file (or of standard input) and "
                            "save them, with the model's identity, as an index folder for "
                            "`minisbert search --index`. The input is read as a stream and the "
                            "index written as it goes, in OUTPUT.partial; if the command is "
                            "interrupted (even killed, or the disk fills up), run it again to "
                            "resume where it stopped.")
    add_input_options(e, required=True)
    e.add_argument("-o", "--output", metavar="FOLDER", required=True, help="index folder to write")
    e.add_argument("--model", metavar="M", default=DEFAULT_MODEL,
                   help=f"model folder or hub name (default: {DEFAULT_MODEL})")
    e.add_argument("--prompt-name", metavar="NAME", help="the model's prompt to put before each "
                   "text, e.g. passage (default: the model's default prompt, if any)")
    e.add_argument("--field", metavar="NAME", help="the input is JSON lines; embed this field "
                   "of each line")
    e.add_argument("--id-field", metavar="NAME", help="with --field: keep this field of each "
                   "line as the text's id (in ids.jsonl)")
    e.add_argument("--skip-bad-lines", action="store_true", help="skip (and count) JSON lines "
                   "that are not JSON or lack the field, instead of stopping at the first")
    e.add_argument("--workers", type=_positive, default=0, metavar="N",
                   help="encode on N worker processes, each on one core (default: this "
                   "process, one batch per core in threads)")
    e.add_argument("--chunk-texts", type=_positive, default=1024, metavar="N",
                   help="texts encoded and saved per checkpoint (default: 1024); an interrupted "
                   "run loses at most the chunks being encoded")
    e.set_defaults(run=encode)

    d = commands.add_parser("download", help="fetch a model folder from the Hugging Face hub",
                            description="Fetch a model into the cache (~/.cache/minisbert, or "
                            "$MINISBERT_CACHE) from $HF_ENDPOINT (default https://huggingface.co).")
    d.add_argument("name", help="hub name, e.g. sentence-transformers/all-MiniLM-L6-v2")
    d.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    d.add_argument("--force", action="store_true", help="fetch files again even if present")
    d.set_defaults(run=download)

    v = commands.add_parser("serve", help="serve embeddings over HTTP (OpenAI's API)",
                            description="Serve the models' embeddings over HTTP: OpenAI's "
                            "/v1/embeddings, text-embeddings-inference's /embed, /v1/models, "
                            "/health and /metrics. Needs pip install 'minisbert[serve]'.")
    v.add_argument("--model", metavar="M", action="append", required=True,
                   help="model folder or hub name; repeat to serve several (clients choose "
                   "with the request's `model`: the folder name or the hub name)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1, this machine only)")
    v.add_argument("--port", type=_positive, default=8000, help="default: 8000")
    keys = v.add_mutually_exclusive_group()
    keys.add_argument("--api-key-file", metavar="FILE", help="require 'Authorization: Bearer "
                      "KEY', KEY being the file's text (a trailing newline is ignored); keeps "
                      "the key out of the process list (default: $MINISBERT_API_KEY_FILE)")
    keys.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' "
                      "(default: $MINISBERT_API_KEY); visible to every user of the machine in "
                      "the process list, so prefer --api-key-file. An empty key is refused")
    v.add_argument("--read-timeout", type=_positive_seconds, default=30, metavar="S",
                   help="seconds a client has to send a request's headers, and then its body; "
                   "a connection that is slower is closed (default: 30)")
    v.add_argument("--batch-wait-ms", type=float, default=5, metavar="MS",
                   help="most time a text waits for others to share its batch (default: 5)")
    v.add_argument("--queue-size", type=_positive, default=4096, metavar="N",
                   help="texts that may wait; more get 503 (default: 4096)")
    v.set_defaults(run=serve)

    c = commands.add_parser("verify", help="check a model folder against sentence-transformers",
                            description="Run a model folder through minisbert and through "
                            "sentence-transformers (or transformers) on the same texts and "
                            "compare: token ids, vectors, nearest neighbours. Exit status 0 "
                            "only within tolerance (ids identical, normalized vectors within "
                            "1e-5).")
    c.add_argument("folder", metavar="FOLDER", help="model folder (or hub name in the cache)")
    c.add_argument("--texts", metavar="FILE", help="text file, one text per non-blank line "
                   "(default: a built-in sample of 52 sentences in 20 languages)")
    c.add_argument("-n", type=_positive, metavar="N", help="use only the first N texts")
    c.add_argument("--split", choices=("lines", "sentences"), default="lines",
                   help="with --texts: one text per line (default), or per sentence")
    c.add_argument("--encoding", help="the --texts file's encoding (default: UTF-8)")
    c.add_argument("--prompt-name", metavar="NAME", help="the model's prompt to put before "
                   "each text (default: the model's default prompt, if any)")
    c.set_defaults(run=verify)
    return p


def _one_line_warning(message, *_) -> str:
    # A warning (texts cut at max_seq_length) is one line in the errors' form, not Python's
    # "file:line: Category: message" followed by a line of minisbert's source.
    return f"minisbert: warning: {' '.join(str(message).split())}\n"


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "search" and (args.input is None) == (args.index is None):
        p.error("search needs exactly one of -i FILE and --index FOLDER")
    if args.command == "search" and args.input == "-" and args.prompt is None:
        p.error("-i - reads the texts from standard input, so the questions cannot come from it "
                "too: pass the question with -p")
    if args.command == "search" and args.index and args.corpus_prompt_name:
        p.error("--corpus-prompt-name applies to -i texts; an index's texts were embedded by "
                "`minisbert encode` (give it --prompt-name there)")
    for stream in (sys.stdin, sys.stdout):  # a stray byte or a non-UTF-8 console: no traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    # Warnings as one line each while the command runs; restored after, for whoever called main.
    plain_format, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return args.run(args)
    except (MinisbertError, OSError) as e:
        message = f"{e.filename}: {e.strerror}" if getattr(e, "strerror", None) and \
            getattr(e, "filename", None) else str(e)
        print(f"minisbert: error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: leave quietly, with the conventional status
        print(file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain_format
