"""`minisbert serve`: an embeddings and reranking server that speaks the OpenAI API (and
text-embeddings-inference's and Cohere's), on Starlette and Uvicorn.

Routes:
  POST /v1/embeddings   OpenAI's embeddings API: `input` (a string or a list of strings),
                        `model`, `encoding_format` ("float" or "base64"), `dimensions`
  POST /embed           text-embeddings-inference's shape: `inputs`, `normalize`, `truncate`,
                        `dimensions`
  POST /                the same as /embed, as text-embeddings-inference answers it (what
                        huggingface_hub's InferenceClient(model=URL) posts to)
  POST /rerank          text-embeddings-inference's reranking: `query`, `texts`, `raw_scores`,
                        `return_text`, `truncate` -> [{"index", "score"(, "text")}], best first
  POST /v1/rerank       Cohere's and Jina's reranking: `model`, `query`, `documents` (strings
                        or {"text": ...}), `top_n`, `return_documents` -> {"model", "results":
                        [{"index", "relevance_score"(, "document": {"text"})}], "usage"}
  GET  /v1/models       the served models, OpenAI's list format
  GET  /health          200 once the models are loaded
  GET  /metrics         Prometheus text format: requests, texts, tokens, batch sizes, queue
                        depth, latency

Texts of concurrent requests share encoder batches (see request_batcher.py); each text is
tokenized once, here, and the batcher encodes those ids. The metrics are kept by metrics.py.
The vectors are those of `SentenceTransformer.encode` for the same texts, so the folder's
default prompt (config_sentence_transformers.json `default_prompt_name`) is put before each
text, as encode puts it; `prompt_name` in the body (both routes) picks another of the folder's prompts, as
encode's prompt_name does. `dimensions` cuts the vectors and normalizes the cut. Texts are
stripped, as encode strips them, and a text longer than the model's max_seq_length (prompt
included) is cut to it on /v1/embeddings (`usage` counts the tokens embedded: prompt and special
tokens included); /embed answers 413 for such a text unless `"truncate": true`, as
text-embeddings-inference does.

A folder whose config.json is a `*ForSequenceClassification` model is served as a reranker
(`CrossEncoder`); the embedding routes refuse it and the rerank routes refuse embedders. One
server may serve both: a rerank request without `model` gets the first reranker. Pairs of
concurrent rerank requests share batches in the same request batcher as texts; scores are
those of `CrossEncoder.predict`: the folder's activation (Sigmoid for one label) unless
`raw_scores`. /rerank answers 413 for a pair longer than max_length unless `"truncate": true`,
as text-embeddings-inference does; /v1/rerank cuts long documents, as Cohere does.

Errors have OpenAI's body, `{"error": {"message", "type", "param", "code"}}` (/embed: TEI's
`{"error", "error_type"}`; /rerank likewise): 400 for a malformed request (/embed and /rerank:
422 for a bad option), 401 without the API key when one is set, 404 for an unknown model, 408
for a body not received within the read deadline, 413 for more than MAX_INPUTS texts or a body
over MAX_BODY_BYTES, 503 with Retry-After when the queue is full. A client that leaves before
its body is read is not an error at all: nothing is logged.

Slow clients: a connection must deliver a request's headers within `read_timeout` seconds of
opening (or of the previous response), and its body within `read_timeout` seconds of the
headers, however it trickles them; else it is closed (`ReadDeadline`, and a 408 for the body).

Left out: token-id input (lists of integers: refused, with a 400 naming LangChain's
check_embedding_ctx_length=False), `user`, a prompt text in the request (only the
names the folder defines: a server that embeds any prefix a client sends is a different
model per client), TLS (put a proxy in front), several
processes (one process already keeps every core busy: batches run one per core).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import locate, pooling
from .cross_encoder import CrossEncoder
from .errors import MinisbertError, MissingDependencyError, PromptError, QueueFull
from .families import is_sequence_classifier
from .folder import read_json, read_modules
from .metrics import CONTENT_TYPE, Metrics
from .model import SentenceTransformer, load
from .request_batcher import Batcher

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect, Request
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError:
    raise MissingDependencyError("`minisbert serve` needs Starlette and Uvicorn: "
                                 "pip install 'minisbert[serve]'") from None

MAX_INPUTS = 2048  # texts per request, OpenAI's limit
MAX_BODY_BYTES = 4 * 1024 * 1024  # 2,048 texts of ~2,000 characters each
RETRY_AFTER_SECONDS = 1  # what a 503 for a full queue tells the client to wait
TOKENIZE_INLINE_CHARS = 20_000  # longer requests are tokenized off the event loop
READ_TIMEOUT_SECONDS = 30  # for a request's headers, then for its body (4 MiB at ~1.1 Mbit/s)
log = logging.getLogger("minisbert.serve")


# ---------------------------------------------------------------------------- errors

class ApiError(Exception):
    """A request the server refuses: the status and what to tell the client."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error",
                 tei_kind: str = "Validation", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind, self.tei_kind, self.headers = kind, tei_kind, headers

    def response(self, tei: bool) -> JSONResponse:
        if tei:  # text-embeddings-inference's error body
            body = {"error": self.message, "error_type": self.tei_kind}
        else:
            body = {"error": {"message": self.message, "type": self.kind, "param": self.param,
                              "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


# ---------------------------------------------------------------------------- models

@dataclass
class Served:
    name: str
    model: SentenceTransformer | CrossEncoder
    batcher: Batcher
    created: int  # when it was loaded, Unix seconds (OpenAI's `created`)

    @property
    def reranker(self) -> bool:
        return isinstance(self.model, CrossEncoder)


def load_any(path: Path) -> SentenceTransformer | CrossEncoder:
    """A sentence encoder, or a cross-encoder if config.json is a sequence classifier and no
    Pooling module makes it a sentence encoder."""
    folder = read_modules(path)
    config = read_json(folder.transformer_dir / "config.json", required=True)
    if is_sequence_classifier(config) and folder.pooling_config is None:
        return CrossEncoder(path)
    return load(path)


def model_name(model_arg: str) -> str:
    """What clients call a model: its folder's name, or the hub name it was given by."""
    path = Path(model_arg).expanduser()
    return Path(os.path.abspath(path)).name if path.is_dir() else model_arg


def _tokenize(model: SentenceTransformer, texts: list[str],
              prompt: str = "") -> tuple[list[np.ndarray], list[int]]:
    """(each text's token ids as int32, tokens cut from each) as encode tokenizes them: the
    prompt put before the stripped text, special tokens added, cut at max_seq_length. The
    only tokenizing a request gets: the batcher encodes these ids, `usage` counts them."""
    ids, cut = [], []
    for text in texts:
        row, n_cut = model.tokenizer.encode_with_cut(prompt + text.strip())
        ids.append(np.array(row, dtype=np.int32))
        cut.append(n_cut)
    return ids, cut


def _tokenize_pairs(model: CrossEncoder, query: str,
                    documents: list[str]) -> tuple[list[np.ndarray], list[int]]:
    """(each (query, document) pair as an int32 [tokens, 2] array of (token id, type id), as
    predict tokenizes it; the full length of each pair that was cut, 0 for the others)."""
    items, full = [], []
    tokenizer, query_tokens = model.tokenizer, None
    for doc, (ids, types) in zip(documents, model.tokenize([(query, d) for d in documents])):
        items.append(np.array([ids, types], dtype=np.int32).T)  # [2, n] -> [n, 2]
        full.append(0)
        if len(ids) == model.max_length:  # perhaps cut: count the pair's tokens uncut
            if query_tokens is None:  # the query's tokens and the template's special tokens
                query_tokens = (len(tokenizer.tokenize(query.strip()))
                                + len(tokenizer.encode_pair("", "")[0]))
            n = query_tokens + len(tokenizer.tokenize(doc.strip()))
            full[-1] = n if n > model.max_length else 0
    return items, full


async def _until_disconnected(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    pass


async def _embed(served: Served, ids: list[np.ndarray], prompt: str,
                 request: Request) -> np.ndarray:
    """The raw pooled vectors [n, dim] of the texts whose token ids (`prompt` first) are given,
    from the batcher; ClientGone if the client left first (its texts not yet encoded are
    dropped)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_done(job):  # runs in a batcher thread
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
        except RuntimeError:  # the event loop has closed: nobody waits any more
            pass

    try:
        job = served.batcher.submit(ids, on_done, prompt)
    except QueueFull as e:
        raise ApiError(503, f"The server is busy ({e}); retry in {RETRY_AFTER_SECONDS} s.",
                       code="server_overloaded", kind="server_error", tei_kind="Overloaded",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({done, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not done.done():
        served.batcher.cancel(job)
        raise ClientGone
    if job.error is not None:
        raise job.error
    return job.vectors


# ---------------------------------------------------------------------------- requests

async def _read_json(request: Request, timeout: float = READ_TIMEOUT_SECONDS):
    """The request body as JSON; 413 over MAX_BODY_BYTES, 408 if it has not all arrived
    `timeout` seconds after the headers, 400 if it is not JSON, ClientGone if the client
    closed the connection before sending it all."""
    too_large = ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes; send "
                         "fewer or shorter texts per request.", code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout  # for the whole body, however slowly it trickles
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), deadline - loop.time())
            except StopAsyncIteration:
                break
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise too_large
    except asyncio.TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {timeout:g} s; the "
                       "connection is closed.", code="request_timeout",
                       headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone from None
    try:
        return json.loads(body)
    # ValueError: not JSON, not UTF-8, or a number of more than 4300 digits; RecursionError:
    # arrays nested thousands deep.
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"The body is not valid JSON ({type(e).__name__}: {str(e)[:200]}); "
                       'send a JSON object such as {"input": "some text", "model": "NAME"}.',
                       tei_kind="Validation") from None


def _shown(value) -> str:
    """A value from a request, as an error message quotes it: short, whatever was sent."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = json.dumps(value) if not isinstance(value, int) or abs(value) < 10**40 \
            else "a very long number"
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


def _choice(body: dict, key: str, choices: tuple[str, ...], status: int) -> str:
    """body[key], which must be one of the strings `choices` (the first when absent or null)."""
    value = body.get(key)
    if value is None:
        return choices[0]
    if not (isinstance(value, str) and value in choices):
        raise ApiError(status, f"{key} is {_shown(value)}; use "
                       f"{' or '.join(map(repr, choices))}.", param=key)
    return value


def _token_ids(texts: list) -> bool:
    """Whether the input is OpenAI's other form: one text as a list of token ids, or a list of
    such lists (what LangChain sends by default)."""
    def ids(v):
        return isinstance(v, int) and not isinstance(v, bool)
    return all(map(ids, texts)) or all(isinstance(t, list) and t and all(map(ids, t))
                                       for t in texts)


def _texts(body, key: str) -> list[str]:
    """The texts of `body[key]`: a string or a non-empty list of non-empty strings."""
    if not isinstance(body, dict):
        raise ApiError(400, f"The body must be a JSON object with an '{key}' field.",
                       param=key)
    if key not in body:
        raise ApiError(400, f"'{key}' is missing: give a string or a list of strings to embed.",
                       param=key)
    value = body[key]
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list):
        raise ApiError(400, f"'{key}' is {type(value).__name__}; give a string or a list of "
                       "strings.", param=key)
    if not texts:
        raise ApiError(400, f"'{key}' is an empty list; give at least one text.", param=key,
                       tei_kind="Empty")
    if _token_ids(texts):
        raise ApiError(400, f"'{key}' holds token ids (lists of integers), not text; this server "
                       "tokenizes text itself, with the model's own tokenizer, so send the "
                       "strings. LangChain's OpenAIEmbeddings sends tiktoken ids unless it is "
                       "created with check_embedding_ctx_length=False.", param=key)
    if len(texts) > MAX_INPUTS:
        raise ApiError(413, f"'{key}' has {len(texts)} texts; at most {MAX_INPUTS} per request.",
                       param=key, code="too_many_inputs")
    for i, text in enumerate(texts):
        where = f"'{key}'" if isinstance(value, str) else f"{key}[{i}]"
        if not isinstance(text, str):
            what = "a list of token ids" if isinstance(text, list) else type(text).__name__
            raise ApiError(400, f"{where} is {what}, not a string; this server embeds text only.",
                           param=key)
        if not text:
            raise ApiError(400, f"{where} is an empty string; every input must have text.",
                           param=key, tei_kind="Empty")
    return texts


def _query(body) -> str:
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object with a 'query' field.", param="query")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        what = "missing" if query is None else f"{type(query).__name__}" if not isinstance(
            query, str) else "empty"
        raise ApiError(400, f"'query' is {what}; give the text to rank the documents for.",
                       param="query", tei_kind="Validation" if query is not None else "Empty")
    return query


def _check_truncation_direction(body: dict, what: str) -> None:
    """TEI's truncation_direction: "right" (or "Right") only; 422 for "left" or anything else."""
    direction = body.get("truncation_direction")
    if isinstance(direction, str) and direction.lower() == "left":
        raise ApiError(422, f"truncation_direction 'left' is not supported; {what} are cut at "
                       "the end.", param="truncation_direction")
    if direction is not None and not (isinstance(direction, str)
                                      and direction.lower() == "right"):
        raise ApiError(422, f"truncation_direction is {_shown(direction)}; use 'right'.",
                       param="truncation_direction")


def _flag(body: dict, key: str, default: bool, status: int) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(status, f"{key!r} must be true or false.", param=key)
    return value


class App:
    """The served models, the API key and the metrics; its methods are the routes."""

    def __init__(self, served: dict[str, Served], api_key: str | None, metrics: Metrics,
                 read_timeout: float = READ_TIMEOUT_SECONDS):
        self.served = served
        self.read_timeout = read_timeout
        # A request without `model` gets the first embedder (embedding routes) or the first
        # reranker (rerank routes).
        self.default = next((s for s in served.values() if not s.reranker), None)
        self.default_reranker = next((s for s in served.values() if s.reranker), None)
        self.api_key = api_key
        self.metrics = metrics

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not given:
            raise ApiError(401, "No API key given: send the header 'Authorization: Bearer KEY'.",
                           tei_kind="Unauthorized")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                                  self.api_key.encode()):
            raise ApiError(401, "Incorrect API key.", code="invalid_api_key",
                           tei_kind="Unauthorized")

    def pick(self, body, reranker: bool = False) -> Served:
        """The model the body names (or the default one), of the kind the route serves."""
        name = body.get("model") if isinstance(body, dict) else None
        kind = "reranker" if reranker else "embedding model"
        if name is None:
            served = self.default_reranker if reranker else self.default
            if served is None:
                raise ApiError(404, f"No {kind} is served here; served: "
                               f"{', '.join(self.served)}.", param="model",
                               code="model_not_found")
            return served
        if not isinstance(name, str):
            raise ApiError(400, f"model is a JSON {type(name).__name__}; give the name of a "
                           f"served model as a string: {', '.join(self.served)}.", param="model")
        if name not in self.served:
            raise ApiError(404, f"The model {_shown(name)} is not served here; served: "
                           f"{', '.join(self.served)}.", param="model", code="model_not_found")
        served = self.served[name]
        if served.reranker != reranker:
            route = "/rerank or /v1/rerank" if served.reranker else "/v1/embeddings or /embed"
            raise ApiError(400, f"{name} is a {'reranker' if served.reranker else 'sentence encoder'}"
                           f", not a{' reranker' if reranker else 'n embedding model'}; send it "
                           f"to {route}.", param="model", code="wrong_model_kind")
        return served

    def prompt(self, served: Served, body: dict, status: int) -> str:
        """The prompt text for the request's `prompt_name`, else the model's default prompt (""
        if it has none), as encode resolves it."""
        name = body.get("prompt_name")
        if name is not None and not isinstance(name, str):
            raise ApiError(status, f"prompt_name is {type(name).__name__}; give the name of one "
                           "of the model's prompts as a string.", param="prompt_name")
        try:
            return served.model.resolve_prompt(name)
        except PromptError:
            known = ", ".join(repr(p) for p in served.model.prompts)
            raise ApiError(status, f"prompt_name {_shown(name)} is not one of {served.name}'s prompts"
                           f"{f' ({known})' if known else ': it has none'}.",
                           param="prompt_name") from None

    async def tokenize(self, served: Served, texts: list[str], prompt: str):
        if sum(map(len, texts)) > TOKENIZE_INLINE_CHARS:  # keep the event loop responsive
            return await run_in_threadpool(_tokenize, served.model, texts, prompt)
        return _tokenize(served.model, texts, prompt)

    def counted(self, served: Served, ids: list[np.ndarray]) -> int:
        """Count the texts and tokens embedded; return the tokens (for `usage`)."""
        tokens = sum(map(len, ids))
        self.metrics.embedded(served.name, len(ids), tokens)
        return tokens

    # ------------------------------------------------------------------ routes

    async def embeddings(self, request: Request) -> Response:
        self.check_key(request)
        body = await _read_json(request, self.read_timeout)
        texts = _texts(body, "input")
        served = self.pick(body)  # an embedding model
        fmt = _choice(body, "encoding_format", ("float", "base64"), 400)
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool)
                                 or not 1 <= dims <= served.model.dim):
            raise ApiError(400, f"dimensions={_shown(dims)} is out of range: {served.name} gives "
                           f"vectors of {served.model.dim} dimensions, so ask for 1 to "
                           f"{served.model.dim}.", param="dimensions")
        prompt = self.prompt(served, body, 400)
        ids, _ = await self.tokenize(served, texts, prompt)  # cut as encode cuts them
        vectors = await _embed(served, ids, prompt, request)  # [n, dim]
        if dims is not None:  # OpenAI's rule: cut, then scale back to unit length
            vectors = pooling.normalize(vectors[:, :dims])
        elif served.model.normalize:
            vectors = pooling.normalize(vectors)
        tokens = self.counted(served, ids)
        if fmt == "base64":  # little-endian float32 bytes, what the openai client decodes
            encoded = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            encoded = vectors.tolist()  # float64 repr of each float32: exact round trip
        return JSONResponse({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e}
                     for i, e in enumerate(encoded)],
            "model": served.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def embed(self, request: Request) -> Response:
        """text-embeddings-inference's /embed: a list of vectors, normalized unless asked not."""
        self.check_key(request)
        body = await _read_json(request, self.read_timeout)
        texts = _texts(body, "inputs")
        served = self.pick(body)
        options = {"normalize": True, "truncate": False}
        for key in options:
            value = body.get(key, options[key])
            if not isinstance(value, bool):
                raise ApiError(422, f"{key!r} must be true or false.", param=key)
            options[key] = value
        _check_truncation_direction(body, "texts")
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool)
                                 or not 1 <= dims <= served.model.dim):
            raise ApiError(422, f"dimensions={_shown(dims)} is out of range: {served.name} gives "
                           f"vectors of {served.model.dim} dimensions.", param="dimensions")
        prompt = self.prompt(served, body, 422)
        ids, cut = await self.tokenize(served, texts, prompt)
        if not options["truncate"]:
            for i, n_cut in enumerate(cut):
                if n_cut:
                    with_prompt = f" with the prompt {prompt!r}" if prompt else ""
                    raise ApiError(413, f"inputs[{i}] has {len(ids[i]) + n_cut} tokens"
                                   f"{with_prompt}; {served.name} takes at most "
                                   f"{served.model.max_seq_length}. Send \"truncate\": true to "
                                   "embed its beginning.", param="inputs")
        vectors = await _embed(served, ids, prompt, request)
        if dims is not None:  # a Matryoshka cut, as text-embeddings-inference makes it
            vectors = vectors[:, :dims]
        if options["normalize"]:
            vectors = pooling.normalize(vectors)
        self.counted(served, ids)
        return JSONResponse(vectors.tolist())

    async def scores(self, served: Served, query: str, documents: list[str], request: Request,
                     raw: bool = False, truncate: bool = True) -> tuple[np.ndarray, int]:
        """(the score of each (query, document) pair, as predict gives it, and the pairs'
        tokens), through the batcher; 413 for a pair past max_length unless truncate."""
        model = served.model
        if len(query) + sum(map(len, documents)) > TOKENIZE_INLINE_CHARS:
            items, full = await run_in_threadpool(_tokenize_pairs, model, query, documents)
        else:
            items, full = _tokenize_pairs(model, query, documents)
        if not truncate:
            for i, n in enumerate(full):
                if n:
                    raise ApiError(413, f"The pair (query, texts[{i}]) has {n} tokens; "
                                   f"{served.name} takes at most {model.max_length}. Send "
                                   "\"truncate\": true to score its beginning.", param="texts")
        logits = await _embed(served, items, "", request)  # [n, labels]
        scores = logits if raw else model.scores(logits)  # [n] (or [n, labels])
        if scores.ndim > 1:
            scores = scores[:, 0] if scores.shape[1] == 1 else None
        if scores is None:
            raise ApiError(400, f"{served.name} gives {model.num_labels} scores per pair; "
                           "ranking needs a model with one (a relevance score).", param="model")
        return scores, self.counted(served, items)

    async def rerank(self, request: Request) -> Response:
        """text-embeddings-inference's /rerank: every text's score, best first."""
        self.check_key(request)
        body = await _read_json(request, self.read_timeout)
        query = _query(body)
        texts = _texts(body, "texts")
        served = self.pick(body, reranker=True)
        raw = _flag(body, "raw_scores", False, 422)
        return_text = _flag(body, "return_text", False, 422)
        truncate = _flag(body, "truncate", False, 422)
        _check_truncation_direction(body, "pairs")
        scores, _ = await self.scores(served, query, texts, request, raw, truncate)
        order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)
        return JSONResponse([{"index": i, "score": float(scores[i]),
                              **({"text": texts[i]} if return_text else {})} for i in order])

    async def rerank_v1(self, request: Request) -> Response:
        """Cohere's and Jina's /v1/rerank: the top_n documents, best first."""
        self.check_key(request)
        body = await _read_json(request, self.read_timeout)
        query = _query(body)
        if isinstance(body.get("documents"), list):  # {"text": ...} objects become their text
            for i, d in enumerate(body["documents"]):
                if isinstance(d, dict) and not isinstance(d.get("text"), str):
                    raise ApiError(400, f"documents[{i}] is an object without a \"text\" "
                                   "string; give each document as a string or {\"text\": ...}.",
                                   param="documents")
            body = {**body, "documents": [d["text"] if isinstance(d, dict) else d
                                          for d in body["documents"]]}
        documents = _texts(body, "documents")
        served = self.pick(body, reranker=True)
        top_n = body.get("top_n")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)
                                  or top_n < 1):
            raise ApiError(400, f"top_n is {_shown(top_n)}; give a whole number of at "
                           "least 1.", param="top_n")
        return_documents = _flag(body, "return_documents", False, 400)
        scores, tokens = await self.scores(served, query, documents, request)
        order = sorted(range(len(documents)), key=lambda i: scores[i], reverse=True)[:top_n]
        return JSONResponse({
            "model": served.name,
            "results": [{"index": i, "relevance_score": float(scores[i]),
                         **({"document": {"text": documents[i]}} if return_documents else {})}
                        for i in order],
            "usage": {"total_tokens": tokens},
        })

    async def models(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"object": "list", "data": [
            {"id": s.name, "object": "model", "created": s.created, "owned_by": "minisbert"}
            for s in self.served.values()]})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.served)})

    async def metrics_text(self, request: Request) -> Response:
        self.check_key(request)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def route(self, path: str, handler, methods: list[str]) -> Route:
        """The handler with error bodies, request counts and latency around it."""
        tei = path in ("/", "/embed", "/rerank")

        async def endpoint(request: Request) -> Response:
            start = time.monotonic()
            try:
                response = await handler(request)
            except ApiError as e:
                response = e.response(tei)
            except ClientGone:
                response = Response(status_code=499)  # nobody reads it; nginx's code for this
            except Exception:
                log.exception("error while answering %s", path)
                response = ApiError(500, "Internal error; the server log has the details.",
                                    kind="server_error", tei_kind="Backend").response(tei)
            self.metrics.request(path, response.status_code, time.monotonic() - start)
            return response

        return Route(path, endpoint, methods=methods)


def create_app(models: dict[str, SentenceTransformer | CrossEncoder],
               api_key: str | None = None, *,
               max_wait: float = 0.005, max_queued: int = 4096,
               read_timeout: float = READ_TIMEOUT_SECONDS) -> Starlette:
    """The ASGI app serving the models (name -> model). Batchers start now, stop at shutdown
    after encoding what is queued. A request body must arrive within read_timeout seconds."""
    if api_key == "":
        raise MinisbertError("the API key is empty; give a key, or none to serve without.")
    metrics = Metrics()
    served = {name: Served(name, model,
                           Batcher(model, max_wait=max_wait, max_queued=max_queued,
                                   on_batch=metrics.batch_observer(name)), int(time.time()))
              for name, model in models.items()}
    metrics.watch({name: s.batcher for name, s in served.items()})
    app = App(served, api_key, metrics, read_timeout)

    @asynccontextmanager
    async def lifespan(_):
        yield
        # Uvicorn has answered every request in flight by now; stop the workers.
        for s in served.values():
            await run_in_threadpool(s.batcher.close)

    return Starlette(routes=[
        app.route("/v1/embeddings", app.embeddings, ["POST"]),
        app.route("/embeddings", app.embeddings, ["POST"]),  # clients whose base URL lacks /v1
        app.route("/embed", app.embed, ["POST"]),
        # text-embeddings-inference answers POST / as /embed for an embedding model; it is
        # where huggingface_hub's InferenceClient(model=URL).feature_extraction posts.
        app.route("/", app.embed, ["POST"]),
        app.route("/rerank", app.rerank, ["POST"]),
        app.route("/v1/rerank", app.rerank_v1, ["POST"]),
        app.route("/v1/models", app.models, ["GET"]),
        app.route("/health", app.health, ["GET"]),
        app.route("/metrics", app.metrics_text, ["GET"]),
    ], lifespan=lifespan)


# ---------------------------------------------------------------------------- command

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when the server is reachable from other machines without a key."""
    if api_key or is_loopback(host):
        return None
    return (f"serving on {host} without an API key: anyone who can reach this machine can use "
            "the server. Pass --api-key-file FILE (or set MINISBERT_API_KEY), or bind to 127.0.0.1.")


class ReadDeadline(AutoHTTPProtocol):
    """Uvicorn's HTTP protocol with a deadline for each request's headers: they must have
    arrived `read_timeout` seconds after the connection opened (or after the previous
    response), else the connection is closed. Uvicorn itself waits forever for a client that
    sends nothing, and restarts its keep-alive clock at every byte, so one byte every few
    seconds would hold a connection open for ever. (The body's deadline is `_read_json`'s.)"""

    read_timeout: float = READ_TIMEOUT_SECONDS
    _deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete: its cycle began
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or
                                                self.cycle.response_complete):
            self._arm()  # the next request's headers (none pipelined behind this one)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._too_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def run(model_args: list[str], *, host: str = "127.0.0.1", port: int = 8000,
        api_key: str | None = None, max_wait_ms: float = 5, max_queued: int = 4096,
        read_timeout: float = READ_TIMEOUT_SECONDS) -> int:
    """Load the models, serve until SIGTERM or Ctrl-C, finish the requests in flight, return 0.
    Headers, then bodies, must arrive within read_timeout seconds each (ReadDeadline)."""
    if api_key == "":  # before the models load: refused at once
        raise MinisbertError("the API key is empty; give a key, or none to serve without.")
    models = {}
    for arg in model_args:
        name = model_name(arg)
        if name in models:
            raise MinisbertError(
                f"two --model arguments are both called {name!r}; rename one of the folders.")
        models[name] = m = load_any(locate.find_model(arg))
        what = (f"reranker, max_length {m.max_length}" if isinstance(m, CrossEncoder) else
                f"{m.dim} dimensions, max_seq_length {m.max_seq_length}")
        print(f"minisbert: serving {name} ({what})", file=sys.stderr, flush=True)
    warning = exposure_warning(host, api_key)
    if warning:
        print(f"minisbert: warning: {warning}", file=sys.stderr, flush=True)
    app = create_app(models, api_key, max_wait=max_wait_ms / 1000, max_queued=max_queued,
                     read_timeout=read_timeout)
    protocol = type("ReadDeadline", (ReadDeadline,), {"read_timeout": read_timeout})
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False,
                                           log_level="info", timeout_graceful_shutdown=60,
                                           http=protocol))
    # Uvicorn catches SIGTERM/SIGINT, stops accepting, waits for the requests in flight, and
    # then raises the signal again under the handlers it found, so that the default action
    # (death by the signal) follows. After a clean drain the exit status should be 0: the
    # handlers it finds and restores are no-ops.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    return 0
