"""`minisbert serve` as its users meet it: a server process on a loopback port, called with the
official `openai` client and with plain HTTP.

Two servers run for this file. The main one serves the real all-MiniLM-L6-v2 and a second
model made from the same weights (CLS + mean pooling: 768 dimensions, no Normalize,
max_seq_length 32), and a third with MiniLM's weights and e5-style prompts in
config_sentence_transformers.json, "query: " the default (pooled without the prompt's tokens),
with an API key from MINISBERT_API_KEY. A small one, with a short queue,
is used for the full queue, a client that leaves early, and SIGTERM. Expected vectors come from
`SentenceTransformer.encode` in this process. The batcher's rules are also tested directly, with a
stand-in model whose encode blocks until told to go.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key-5dd1"
MAIN = "all-MiniLM-L6-v2"
SECOND = "minilm-cls-mean-32"
PROMPTED = "minilm-query-prompt"
PROMPTS = {"query": "query: ", "passage": "passage: "}
# Vectors served equal encode's up to float rounding: a batch of one text may round otherwise
# than a larger batch (measured 2.2e-7); the bound leaves room for that and nothing more.
TOLERANCE = 1e-6


def _need_serving_stack():
    for name in ("starlette", "uvicorn", "httpx", "openai"):
        pytest.importorskip(name, reason=f"{name} is not installed "
                            "(pip install 'minisbert[serve,test]')")


# ---------------------------------------------------------------------------- fixtures

def _link_folder(source: Path, target: Path, replace: dict[str, str]) -> Path:
    """A model folder of symlinks to `source`'s files, with the files in `replace` written anew."""
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if path.is_dir() or str(rel) in replace:
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).symlink_to(path)
    for rel, text in replace.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    return target


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("served")
    main = _link_folder(minilm_path, root / MAIN, {})
    modules = json.loads((minilm_path / "modules.json").read_text())
    second = _link_folder(minilm_path, root / SECOND, {
        "modules.json": json.dumps([m for m in modules if not m["type"].endswith("Normalize")]),
        "sentence_bert_config.json": json.dumps({"max_seq_length": 32, "do_lower_case": False}),
        "1_Pooling/config.json": json.dumps({"word_embedding_dimension": 384,
                                             "pooling_mode_cls_token": True,
                                             "pooling_mode_mean_tokens": True}),
    })
    prompted = _link_folder(minilm_path, root / PROMPTED, {
        "config_sentence_transformers.json": json.dumps({"prompts": PROMPTS,
                                                         "default_prompt_name": "query"}),
        "1_Pooling/config.json": json.dumps({"word_embedding_dimension": 384,
                                             "pooling_mode_mean_tokens": True,
                                             "include_prompt": False}),
    })
    return {MAIN: main, SECOND: second, PROMPTED: prompted}


@pytest.fixture(scope="module")
def local(folders):
    """The same models loaded in this process: what the server's vectors must equal."""
    import minisbert
    return {name: minisbert.load(folder) for name, folder in folders.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m minisbert serve ...` on a free loopback port; stopped by `stop`."""

    def __init__(self, args: list, log: Path, env: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.log_file = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minisbert", "serve", *map(str, args), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=self.log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        import httpx
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"the server did not come up; its log:\n{log.read_text()}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(folders, tmp_path_factory):
    _need_serving_stack()
    srv = Server(["--model", folders[MAIN], "--model", folders[SECOND],
                  "--model", folders[PROMPTED]],
                 tmp_path_factory.mktemp("log") / "server.log", env={"MINISBERT_API_KEY": KEY})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_server(folders, tmp_path_factory):
    _need_serving_stack()
    srv = Server(["--model", folders[MAIN], "--queue-size", "100"],
                 tmp_path_factory.mktemp("log") / "small.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI
    # max_retries=0: a retried failure would hide the very errors these tests look for.
    return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _post(server, path, body=None, *, key=KEY, content=None, timeout=120):
    import httpx
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, json=body, content=content, headers=headers,
                      timeout=timeout)


def _parse_metrics(text: str) -> tuple[dict, dict]:
    """/metrics read by Prometheus' own parser: ({(sample name, labels): value}, {family: type})."""
    from prometheus_client.parser import text_string_to_metric_families
    samples, kinds = {}, {}
    for family in text_string_to_metric_families(text):
        kinds[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples, kinds


def _metrics(server) -> dict:
    import httpx
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return _parse_metrics(r.text)[0]


def _metric(server, name: str, **labels) -> float:
    """One sample of /metrics; 0 if the series has not started yet."""
    return _metrics(server).get((name, frozenset(labels.items())), 0.0)


def _worst(name, got, want) -> float:
    got, want = np.atleast_2d(np.asarray(got, np.float64)), np.atleast_2d(want.astype(np.float64))
    assert got.shape == want.shape, (got.shape, want.shape)
    worst = float(np.abs(got - want).max())
    exact = int((got == want).all(axis=1).sum())
    print(f"\n{name}: served[0,:3]={np.round(got[0, :3], 6).tolist()} "
          f"encode[0,:3]={np.round(want[0, :3], 6).tolist()} maxdiff = {worst:.3e}, "
          f"{exact}/{len(got)} rows bitwise equal")
    return worst


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


TEXTS = ["A man is eating food.", "  Someone is having a meal.  ", "A monkey plays drums.",
         "The new movie is awesome!", "Das ist ein deutscher Satz."]


# ---------------------------------------------------------------------------- OpenAI API

def test_string_float_gives_encodes_vector_and_usage(client, local):
    model = local[MAIN]
    r = client.embeddings.create(model=MAIN, input=TEXTS[0], encoding_format="float")
    assert r.model == MAIN and len(r.data) == 1 and r.data[0].index == 0
    assert _worst("string, float", r.data[0].embedding, model.encode(TEXTS[0])) <= TOLERANCE
    assert r.usage.prompt_tokens == r.usage.total_tokens == len(model.tokenizer.encode(TEXTS[0]))


def test_list_base64_the_clients_default(client, local):
    model = local[MAIN]
    r = client.embeddings.create(model=MAIN, input=TEXTS)  # the client asks for base64
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    assert _worst("list, base64", [d.embedding for d in r.data], model.encode(TEXTS)) <= TOLERANCE
    assert r.usage.prompt_tokens == sum(len(model.tokenizer.encode(t.strip())) for t in TEXTS)


def test_base64_is_little_endian_float32(server, local):
    r = _post(server, "/v1/embeddings", {"model": MAIN, "input": TEXTS[:2],
                                         "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    got = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r.json()["data"]]
    assert _worst("raw base64", got, local[MAIN].encode(TEXTS[:2])) <= TOLERANCE


@pytest.mark.parametrize("dims", [1, 64, 384])
def test_dimensions_cut_then_normalize(client, local, dims):
    r = client.embeddings.create(model=MAIN, input=TEXTS[:3], dimensions=dims,
                                 encoding_format="float")
    got = np.array([d.embedding for d in r.data])
    assert got.shape == (3, dims)
    want = _unit(local[MAIN].encode(TEXTS[:3])[:, :dims])
    assert _worst(f"dimensions={dims}", got, want) <= TOLERANCE
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_model_field_chooses_the_model(client, server, local):
    listed = client.models.list()
    assert [m.id for m in listed.data] == [MAIN, SECOND, PROMPTED]
    r = client.embeddings.create(model=SECOND, input=TEXTS[:2], encoding_format="float")
    got = np.array([d.embedding for d in r.data])
    assert r.model == SECOND and got.shape == (2, 768)
    want = local[SECOND].encode(TEXTS[:2])  # raw CLS + mean, not normalized
    assert _worst("second model", got, want) <= TOLERANCE * max(1.0, float(np.abs(want).max()))
    # Without `model`, the first served model answers.
    r = _post(server, "/v1/embeddings", {"input": "x"})
    assert r.status_code == 200 and r.json()["model"] == MAIN


def test_texts_past_max_seq_length_are_cut_and_usage_counts_what_was_embedded(client, local):
    long_text = " ".join(["word"] * 200)
    r = client.embeddings.create(model=SECOND, input=[long_text, "short"], encoding_format="float")
    assert r.usage.prompt_tokens == 32 + len(local[SECOND].tokenizer.encode("short"))
    with warnings.catch_warnings():  # the cut is expected here
        warnings.simplefilter("ignore")
        want = local[SECOND].encode([long_text, "short"])
    assert _worst("cut at 32", [d.embedding for d in r.data], want) <= TOLERANCE * 10


# ---------------------------------------------------------------------------- prompts

def _tokens_with_prompt(model, texts, prompt):
    """Tokens the encoder sees per text: the prompt put before the stripped text, [CLS] and
    [SEP] around it, cut at max_seq_length."""
    return [min(len(model.tokenizer.tokenize(prompt + t.strip())) + 2, model.max_seq_length)
            for t in texts]


def test_default_prompt_as_encode_puts_it_and_usage_counts_its_tokens(client, server, local):
    model = local[PROMPTED]
    assert model.default_prompt_name == "query" and not model.pooling.include_prompt
    r = client.embeddings.create(model=PROMPTED, input=TEXTS, encoding_format="float")
    got = np.array([d.embedding for d in r.data])
    assert _worst("default prompt", got, model.encode(TEXTS)) <= TOLERANCE
    no_prompt = model.encode(TEXTS, prompt="")
    print(f"served vs encode(prompt=''): maxdiff {np.abs(got - no_prompt).max():.3f}")
    assert np.abs(got - no_prompt).max() > 1e-2  # the prompt really changes the vectors
    with_prompt = _tokens_with_prompt(model, TEXTS, "query: ")
    without = _tokens_with_prompt(model, TEXTS, "")
    print(f"usage {r.usage.prompt_tokens}: {sum(with_prompt)} with the prompt, "
          f"{sum(without)} without")
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(with_prompt) > sum(without)

    # /embed (text-embeddings-inference's route) gives the same, normalized as it normalizes.
    r = _post(server, "/embed", {"inputs": TEXTS, "model": PROMPTED})
    assert r.status_code == 200, r.text
    assert _worst("/embed default prompt", r.json(), model.encode(TEXTS)) <= TOLERANCE


def test_prompt_name_in_the_body_picks_another_prompt(client, server, local):
    model = local[PROMPTED]
    want = model.encode(TEXTS, prompt_name="passage")
    r = client.embeddings.create(model=PROMPTED, input=TEXTS, encoding_format="float",
                                 extra_body={"prompt_name": "passage"})
    assert _worst("prompt_name=passage", [d.embedding for d in r.data], want) <= TOLERANCE
    assert r.usage.prompt_tokens == sum(_tokens_with_prompt(model, TEXTS, "passage: "))
    r = _post(server, "/embed", {"inputs": TEXTS, "model": PROMPTED, "prompt_name": "passage"})
    assert r.status_code == 200, r.text
    assert _worst("/embed prompt_name=passage", r.json(), want) <= TOLERANCE

    # Names the folder does not define are refused, saying which it does.
    r = _post(server, "/v1/embeddings", {"input": "x", "model": PROMPTED, "prompt_name": "qury"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt_name", r.text
    assert "'query', 'passage'" in r.json()["error"]["message"]
    r = _post(server, "/v1/embeddings", {"input": "x", "model": MAIN, "prompt_name": "query"})
    assert r.status_code == 400 and "it has none" in r.json()["error"]["message"], r.text
    r = _post(server, "/embed", {"inputs": "x", "model": PROMPTED, "prompt_name": 3})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation", r.text


def test_the_prompt_counts_toward_max_seq_length(client, server, local):
    """254 words fill MiniLM's 256 tokens exactly; "query: " adds two, so encode cuts the text
    and /embed refuses it unless told to truncate."""
    model = local[PROMPTED]
    text = " ".join(["word"] * 254)
    assert _tokens_with_prompt(model, [text], "") == [256]
    r = _post(server, "/embed", {"inputs": [text], "model": PROMPTED})
    assert r.status_code == 413 and "258 tokens with the prompt 'query: '" in r.json()["error"], \
        r.text
    r = client.embeddings.create(model=PROMPTED, input=[text], encoding_format="float")
    assert r.usage.prompt_tokens == 256
    with warnings.catch_warnings():  # the cut is expected here
        warnings.simplefilter("ignore")
        want = model.encode([text])
    assert _worst("prompt + 254 words, cut", [d.embedding for d in r.data], want) <= TOLERANCE


# ---------------------------------------------------------------------------- TEI's /embed

def test_embed_in_text_embeddings_inference_shape(server, local):
    model = local[MAIN]
    r = _post(server, "/embed", {"inputs": TEXTS[0]})
    assert r.status_code == 200, r.text
    assert _worst("/embed", r.json(), model.encode([TEXTS[0]])) <= TOLERANCE
    raw = _post(server, "/embed", {"inputs": TEXTS[:2], "normalize": False}).json()
    norms = np.linalg.norm(np.array(raw), axis=1)
    print(f"/embed normalize=false norms: {norms}")
    assert not np.allclose(norms, 1, atol=1e-3)  # really the pooled vectors before Normalize
    want = model.encode(TEXTS[:2])
    assert _worst("/embed raw, normalized here", _unit(np.array(raw)), want) <= TOLERANCE


def test_embed_too_long_is_413_unless_truncate(server, local):
    long_text = " ".join(["word"] * 100)
    r = _post(server, "/embed", {"inputs": ["ok", long_text], "model": SECOND})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation", r.text
    assert "inputs[1]" in r.json()["error"] and "102 tokens" in r.json()["error"]
    r = _post(server, "/embed", {"inputs": [long_text], "model": SECOND, "truncate": True})
    assert r.status_code == 200, r.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _unit(local[SECOND].encode([long_text]))
    assert _worst("/embed truncate", r.json(), want) <= TOLERANCE


@pytest.mark.parametrize("body,status", [
    ({"inputs": []}, 400), ({"inputs": [""]}, 400), ({"inputs": "x", "normalize": "yes"}, 422),
    ({"inputs": "x", "truncation_direction": "left"}, 422), ({}, 400)])
def test_embed_bad_requests(server, body, status):
    r = _post(server, "/embed", body)
    print(r.status_code, r.text)
    assert r.status_code == status and set(r.json()) == {"error", "error_type"}


# ---------------------------------------------------------------------------- errors

BIG = "x" * (4 * 1024 * 1024)
BAD_REQUESTS = {
    "invalid JSON": (b'{"input": "a",', 400, None),
    "not an object": ([1, 2], 400, "input"),
    "no input": ({"model": MAIN}, 400, "input"),
    "input a number": ({"input": 3}, 400, "input"),
    "empty list": ({"input": []}, 400, "input"),
    "empty string": ({"input": ""}, 400, "input"),
    "empty string in a list": ({"input": ["a", ""]}, 400, "input"),
    "non-string item": ({"input": ["a", "b", 7]}, 400, "input"),
    "token ids": ({"input": [[101, 102]]}, 400, "input"),
    "2049 inputs": ({"input": ["a"] * 2049}, 413, "input"),
    "body over 4 MiB": ({"input": BIG}, 413, None),
    "unknown model": ({"input": "a", "model": "gpt-17"}, 404, "model"),
    "encoding_format int8": ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    "dimensions 0": ({"input": "a", "dimensions": 0}, 400, "dimensions"),
    "dimensions 385": ({"input": "a", "dimensions": 385}, 400, "dimensions"),
    "dimensions 769 on the second model": ({"input": "a", "model": SECOND, "dimensions": 769},
                                           400, "dimensions"),
    "dimensions true": ({"input": "a", "dimensions": True}, 400, "dimensions"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_gets_openai_error_body(server, case):
    body, status, param = BAD_REQUESTS[case]
    r = _post(server, "/v1/embeddings", **({"content": body} if isinstance(body, bytes) else
                                           {"body": body}))
    print(f"{case}: {r.status_code} {r.text[:300]}")
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    if case == "non-string item":
        assert "input[2]" in error["message"]
    if case == "unknown model":
        assert error["code"] == "model_not_found"


def test_openai_client_raises_its_own_errors(client):
    import openai
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="a")
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MAIN, input="a", dimensions=1000)
    assert "1 to 384" in str(e.value)


def test_api_key(server):
    import httpx
    from openai import AuthenticationError, OpenAI
    assert _post(server, "/v1/embeddings", {"input": "a"}, key=None).status_code == 401
    r = _post(server, "/v1/embeddings", {"input": "a"}, key="wrong")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # for load balancers
    wrong = OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.embeddings.create(model=MAIN, input="a")


# ---------------------------------------------------------------------------- concurrency

def test_concurrent_clients_each_get_their_own_vectors(client, server, local):
    """64 threads x 10 requests of 1-3 texts each, in different combinations: every response
    must carry the vectors of exactly its own texts, in its order, and none may fail."""
    pool = [f"Sentence number {i} is about {w}." for i, w in
            enumerate(("cats", "rivers", "money", "engines", "music", "snow", "bread", "law") * 16)]
    want = local[MAIN].encode(pool)  # [128, 384]
    n_threads, n_requests = 64, 10
    failures, worst = [], [0.0]
    lock = threading.Lock()
    batches_before = _metric(server, "minisbert_batch_size_count", model=MAIN)

    def client_thread(t):
        rng = np.random.default_rng(t)
        for _ in range(n_requests):
            picks = rng.choice(len(pool), size=rng.integers(1, 4), replace=False)
            try:
                r = client.embeddings.create(model=MAIN, input=[pool[i] for i in picks],
                                             timeout=120)
                got = np.array([d.embedding for d in r.data])
                diff = float(np.abs(got - want[picks]).max()) if got.shape == (len(picks), 384) \
                    else np.inf
                with lock:
                    worst[0] = max(worst[0], diff)
                    if diff > TOLERANCE:
                        failures.append(f"thread {t}: texts {picks.tolist()} off by {diff}")
            except Exception as e:  # noqa: BLE001 - every failure is collected and reported
                with lock:
                    failures.append(f"thread {t}: {type(e).__name__}: {e}")

    start = time.monotonic()
    threads = [threading.Thread(target=client_thread, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 300 - (time.monotonic() - start)))
    assert not any(t.is_alive() for t in threads), "requests still running after 300 s"
    batches = _metric(server, "minisbert_batch_size_count", model=MAIN) - batches_before
    print(f"\n{n_threads * n_requests} requests in {time.monotonic() - start:.1f} s, "
          f"{batches:.0f} encoder batches, worst difference {worst[0]:.3e}")
    assert not failures, failures[:5]
    assert batches < n_threads * n_requests  # requests shared batches


def test_metrics_parse_as_prometheus_and_count_the_requests_served(server):
    import httpx
    before = _metrics(server)
    texts = ["a man eats", "two dogs run in the park", "b"]
    answer = _post(server, "/v1/embeddings", {"input": texts}).json()
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after, kinds = _parse_metrics(r.text)
    # prometheus_client adds a `<name>_created` gauge beside each counter and histogram
    kinds = {name: kind for name, kind in kinds.items() if not name.endswith("_created")}
    print(f"\nmetric families: {kinds}")
    assert kinds == {"minisbert_requests": "counter", "minisbert_request_duration_seconds":
                     "histogram", "minisbert_texts": "counter", "minisbert_tokens": "counter",
                     "minisbert_texts_dropped": "counter", "minisbert_queue_depth": "gauge",
                     "minisbert_batch_size": "histogram"}

    def grew(name, **labels):
        key = name, frozenset(labels.items())
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = "/v1/embeddings"
    assert grew("minisbert_requests_total", route=route, status="200") == 1
    assert grew("minisbert_requests_total", route="/metrics", status="200") == 1  # the first scrape
    assert grew("minisbert_request_duration_seconds_count", route=route) == 1
    assert grew("minisbert_request_duration_seconds_bucket", route=route, le="+Inf") == 1
    assert grew("minisbert_request_duration_seconds_sum", route=route) > 0
    assert grew("minisbert_texts_total", model=MAIN) == 3
    assert grew("minisbert_tokens_total", model=MAIN) == answer["usage"]["total_tokens"]
    assert grew("minisbert_batch_size_sum", model=MAIN) == 3  # the 3 texts, in 1 to 3 batches
    assert 1 <= grew("minisbert_batch_size_count", model=MAIN) <= 3
    assert grew("minisbert_texts_total", model=SECOND) == 0
    assert after["minisbert_queue_depth", frozenset({("model", MAIN)})] == 0
    assert after["minisbert_texts_dropped_total", frozenset({("model", MAIN)})] == 0


# ---------------------------------------------------------------- the app in this process

def test_each_text_is_tokenized_once_and_no_thread_pool_starts_per_batch(folders, monkeypatch):
    _need_serving_stack()
    import minisbert
    from minisbert import threads
    from minisbert.serve import create_app
    from starlette.testclient import TestClient
    model = minisbert.load(folders[MAIN])
    tokenized = []
    encode_with_cut = model.tokenizer.encode_with_cut  # tokenizer.encode calls it too

    def counted(text):
        tokenized.append(text)
        return encode_with_cut(text)

    monkeypatch.setattr(model.tokenizer, "encode_with_cut", counted)
    from test_threads import counting_pools
    pools = counting_pools(monkeypatch)
    with TestClient(create_app({MAIN: model})) as http:
        assert http.post("/v1/embeddings", json={"input": "warm up"}).status_code == 200
        threads_before, tokenized[:] = threading.active_count(), []
        for i in range(20):
            texts = [f"{text} ({i})" for text in TEXTS[:3]]
            r = http.post("/v1/embeddings" if i % 2 else "/embed",
                          json={"input": texts} if i % 2 else {"inputs": texts})
            assert r.status_code == 200, r.text
        threads_after = threading.active_count()
    print(f"\n60 texts: tokenized {len(tokenized)} times; thread pools started: {len(pools)} "
          f"(threads.workers() = {threads.workers()}); threads {threads_before} -> "
          f"{threads_after}")
    assert len(tokenized) == 60
    assert pools == [] and threads_after == threads_before


def test_two_apps_in_one_process_keep_their_own_metrics(local):
    _need_serving_stack()
    from minisbert.serve import create_app
    from starlette.testclient import TestClient
    with TestClient(create_app({MAIN: local[MAIN]})) as first, \
            TestClient(create_app({MAIN: local[MAIN]})) as second:
        assert first.post("/v1/embeddings", json={"input": ["one", "two"]}).status_code == 200
        seen = [_parse_metrics(c.get("/metrics").text)[0] for c in (first, second)]
    texts = [m.get(("minisbert_texts_total", frozenset({("model", MAIN)})), 0) for m in seen]
    print(f"\ntexts counted by the first app, the second: {texts}")
    assert texts == [2, 0]


# ---------------------------------------------------------------- overload, leaving, stopping

LONG = " ".join(f"token{i}" for i in range(120))  # cut at 256 tokens: the slowest texts


def _busy(server, n_texts: int, min_queued: int):
    """Send n_texts long texts in a thread; return (thread, result holder) once at least
    min_queued of them wait in the queue."""
    result = {}

    def send():
        result["response"] = _post(server, "/v1/embeddings", {"input": [LONG] * n_texts},
                                   timeout=300)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 60
    while _metric(server, "minisbert_queue_depth", model=MAIN) < min_queued:
        assert time.monotonic() < deadline and thread.is_alive(), "the queue never filled"
        time.sleep(0.01)
    return thread, result


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_full_queue_503_and_a_client_that_leaves_costs_nothing(small_server):
    import httpx
    # 96 long texts: two workers take a batch of 8 each (8 x 256 tokens fill a batch), so at
    # least 72 wait once the two batches after those have been taken, for several batch times.
    thread, result = _busy(small_server, 96, min_queued=72)
    # The queue holds at most 100 texts: 30 more do not fit -> 503 with Retry-After.
    r = _post(small_server, "/v1/embeddings", {"input": ["more"] * 30}, key=None)
    print(r.status_code, r.headers.get("retry-after"), r.text)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "server_error"
    # 5 texts fit; their client gives up before they are reached: they are dropped, not encoded.
    with pytest.raises(httpx.TimeoutException):
        _post(small_server, "/v1/embeddings", {"input": [f"gone {i}" for i in range(5)]},
              key=None, timeout=0.2)
    thread.join(300)
    assert result["response"].status_code == 200 and len(result["response"].json()["data"]) == 96
    deadline = time.monotonic() + 10
    while _metric(small_server, "minisbert_texts_dropped_total", model=MAIN) < 5:
        assert time.monotonic() < deadline, "the texts of the client that left were encoded"
        time.sleep(0.05)
    assert _metric(small_server, "minisbert_texts_dropped_total", model=MAIN) == 5
    assert _metric(small_server, "minisbert_texts_total", model=MAIN) == 96


def test_sigterm_finishes_requests_in_flight_and_exits_0(small_server):
    thread, result = _busy(small_server, 24, min_queued=1)
    small_server.proc.send_signal(signal.SIGTERM)
    thread.join(300)
    assert result["response"].status_code == 200 and len(result["response"].json()["data"]) == 24
    assert small_server.proc.wait(60) == 0
    print(small_server.log.read_text()[-400:])


# ---------------------------------------------------------------------------- without a server

def test_serve_without_the_extra_names_the_install_line(minilm_path):
    # sys.modules[name] = None makes `import name` fail, as if it were not installed.
    code = ("import sys; sys.modules['uvicorn'] = None; from minisbert.cli import main; "
            f"sys.exit(main(['serve', '--model', {str(minilm_path)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    print(out.stderr)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "pip install 'minisbert[serve]'" in out.stderr


def test_warning_when_reachable_from_other_machines_without_a_key():
    _need_serving_stack()
    from minisbert.serve import exposure_warning
    assert "--api-key" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("my-host.example", None)
    assert exposure_warning("0.0.0.0", "key") is None
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert exposure_warning(host, None) is None


# ---------------------------------------------------------------------------- the batcher alone

class _CountingModel:
    """Stands in for a SentenceTransformer: a text's ids [17, 17, ...] -> vector [17, 0]; a batch
    waits for `gate`. Its prompt's length is the prompt's number of characters."""
    dim, max_batch_tokens, normalize = 2, 2048, False
    pooling = types.SimpleNamespace(include_prompt=False)

    def __init__(self):
        self.gate = threading.Event()
        self.batches = []  # the first id of each text, per batch
        self.prompt_lengths = []  # what pooling was told to leave out, per batch

    def prompt_length(self, prompt):
        return len(prompt)

    def _embed_batch(self, ids, prompt_length):
        assert self.gate.wait(60)
        self.batches.append([int(x[0]) for x in ids])
        self.prompt_lengths.append(prompt_length)
        return np.array([[float(x[0]), 0.0] for x in ids], np.float32)


def _ids(numbers, length):
    """Token ids of texts `length` tokens long, text n all n's."""
    return [np.full(length, n, np.int32) for n in numbers]


def _job_done():
    event = threading.Event()
    return event, (lambda job: event.set())


def test_batches_keep_encodes_caps_and_rows_go_to_their_own_job():
    from minisbert.request_batcher import Batcher
    model = _CountingModel()
    model.gate.set()
    batcher = Batcher(model, workers=2, max_wait=0.002)
    long_done, on_long = _job_done()
    short_done, on_short = _job_done()
    long_job = batcher.submit(_ids(range(100), 100), on_long)
    short_job = batcher.submit(_ids(range(1000, 1050), 10), on_short)
    assert long_done.wait(60) and short_done.wait(60)
    batcher.close()
    for batch in model.batches:
        width = max(100 if t < 1000 else 10 for t in batch)
        assert len(batch) <= 32 and len(batch) * width <= 2048, (len(batch), width)
    assert long_job.vectors[:, 0].tolist() == list(range(100))
    assert short_job.vectors[:, 0].tolist() == list(range(1000, 1050))


def test_full_queue_refuses_and_cancel_drops_waiting_texts():
    from minisbert.request_batcher import Batcher
    from minisbert.errors import QueueFull
    model = _CountingModel()  # gate closed: the worker holds its first batch
    batcher = Batcher(model, workers=1, max_wait=0, max_queued=10)
    first_done, on_first = _job_done()
    batcher.submit(_ids(range(40), 10), on_first)  # empty queue: admitted
    deadline = time.monotonic() + 30
    while batcher.queued != 8:  # the worker took 32, 8 wait
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(QueueFull):
        batcher.submit(_ids([1, 2, 3], 3), lambda job: None)  # 8 + 3 > 10
    called = []
    gone = batcher.submit(_ids([7, 8], 3), called.append)  # 8 + 2 fits
    batcher.cancel(gone)
    assert batcher.queued == 8 and batcher.dropped == 2
    model.gate.set()
    assert first_done.wait(60)
    batcher.close()
    assert called == [] and sum(map(len, model.batches)) == 40


def test_a_batch_holds_texts_of_one_prompt():
    from minisbert.request_batcher import Batcher
    model = _CountingModel()  # gate closed until all three jobs wait
    batcher = Batcher(model, workers=1, max_wait=0)
    events = []
    for texts, prompt in (([1, 2], "query: "), ([3], "passage: "), ([4, 5], "query: ")):
        done, on_done = _job_done()
        events.append((done, batcher.submit(_ids(texts, 5), on_done, prompt)))
    model.gate.set()
    assert all(done.wait(60) for done, _ in events)
    batcher.close()
    print(f"\nbatches {model.batches}, prompt lengths {model.prompt_lengths}")
    for batch, prompt_length in zip(model.batches, model.prompt_lengths):
        want = {1: "query: ", 2: "query: ", 4: "query: ", 5: "query: ", 3: "passage: "}
        assert {len(want[t]) for t in batch} == {prompt_length}
    assert [job.vectors[:, 0].tolist() for _, job in events] == [[1, 2], [3], [4, 5]]
