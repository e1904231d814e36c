"""Switching by one import: typical sentence-transformers snippets (from its README and docs),
run twice, once after `from sentence_transformers import ...` and once after
`from minisbert import ...`, give the same results.

Each snippet is one text with `LIB` where the package name goes; it leaves its outputs in a
dict `result`. They run on the real all-MiniLM-L6-v2 and on a folder with e5-style prompts
(written by sentence-transformers itself, see st_folder.py): include_prompt false, no
Normalize, "dot" as its similarity function.

Tolerances: unit vectors (keys ending in _unit) <= 1e-5 max abs; other floats atol 1e-4 +
rtol 1e-5; ids, shapes and quantized vectors exactly equal. minisbert returns NumPy arrays
where sentence-transformers returns torch tensors (except with convert_to_tensor=True); the
comparison converts them, and checks that minisbert's are NumPy.

The arguments minisbert refuses are checked for their messages at the end.
"""

import json
import sys
import textwrap
import warnings

import numpy as np
import pytest

import minisbert
import st_folder
from minisbert.errors import ArgumentError, EmbeddingInputError, MissingDependencyError

LIBRARIES = ["sentence_transformers", "minisbert"]
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!",
             "He drove to the stadium.", "A man is eating food.",
             "A man is eating a piece of bread.", "The girl is carrying a baby."]


@pytest.fixture(scope="module")
def prompts_path(tmp_path_factory, minilm_path):
    """A small random BERT with mean pooling that leaves the prompt out, e5's prompts,
    default_prompt_name "query", and similarity_fn_name "dot" in its config."""
    pytest.importorskip("sentence_transformers")
    folder = st_folder.make_folder(tmp_path_factory.mktemp("prompts"), minilm_path,
                                   include_prompt=False, prompts=E5_PROMPTS,
                                   default_prompt_name="query")
    path = folder / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    assert config["prompts"].get("document") == ""  # sentence-transformers saved its default
    path.write_text(json.dumps({**config, "similarity_fn_name": "dot"}))
    return folder


@pytest.fixture(scope="module")
def texts():
    return SENTENCES + [t for t in st_folder.texts(40) if t][:30]


def run(snippet: str, library: str, **names) -> dict:
    """Run the snippet with LIB replaced by `library`; its `result`."""
    if library == "sentence_transformers":
        pytest.importorskip("sentence_transformers")
    scope = dict(names)
    with warnings.catch_warnings():  # quantization and deprecation notes
        warnings.simplefilter("ignore")
        exec(textwrap.dedent(snippet).replace("LIB", library), scope)
    return scope["result"]


def as_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def compare(name: str, ours, theirs) -> float:
    """Assert ours equals theirs (recursively, in the tolerance of `name`); the worst float
    difference."""
    if isinstance(theirs, dict):
        assert set(ours) <= set(theirs), f"{name}: keys {set(ours) - set(theirs)}"
        return max([compare(f"{name}.{k}", ours[k], theirs[k]) for k in ours], default=0.0)
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), name
        return max([compare(f"{name}[{i}]", a, b) for i, a, b in zip(range(len(ours)), ours,
                                                                          theirs)], default=0.0)
    if not hasattr(theirs, "shape"):  # a number, a string, a tuple of them
        assert ours == theirs, f"{name}: {ours!r} != {theirs!r}"
        return 0.0
    if not name.endswith("tensor"):
        assert isinstance(ours, np.ndarray), f"{name}: {type(ours).__name__}, not an array"
    a, b = as_numpy(ours), as_numpy(theirs)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    if not np.issubdtype(b.dtype, np.floating):  # ids, quantized vectors: exactly
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        differ = np.argwhere(a != b)
        assert len(differ) == 0, f"{name}: {len(differ)} values differ, first at {differ[:5]}"
        return 0.0
    assert a.dtype == b.dtype == np.float32, f"{name}: {a.dtype}, {b.dtype}"
    worst = float(np.abs(a - b).max()) if a.size else 0.0
    if "_unit" in name:
        assert worst <= 1e-5, f"{name}: max abs diff {worst:.2e}"
    else:
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5, err_msg=name)
    return worst


def check(snippet: str, quantized=(), **names) -> tuple[dict, dict]:
    """Run the snippet with both libraries and compare every output but the `quantized` ones
    (see assert_same_buckets); both results."""
    theirs = run(snippet, "sentence_transformers", **names)
    ours = run(snippet, "minisbert", **names)
    assert set(ours) == set(theirs)
    for key in theirs:
        if key not in quantized:
            print(f"{key}: max abs diff {compare(key, ours[key], theirs[key]):.2e}")
    return ours, theirs


def assert_same_buckets(name: str, ours, theirs, floats: tuple, calibration: tuple,
                        precision: str) -> None:
    """int8/uint8 vectors quantized from floats that agree to ~1e-7 (`floats`: ours, theirs;
    `calibration`: the vectors each side took the ranges from).

    1. Ours are exactly what sentence-transformers' own quantize_embeddings makes of our
       floats: the arithmetic is the same, bit for bit.
    2. Where ours differ from the reference's, by one bucket at most, the two floats lie on
       either side of a bucket edge: the reference's float is no further from the edge than
       the two floats are apart (in buckets, plus float32 rounding of the position). Most
       such values are a dimension's maximum, whose position (max - min) / ((max - min) / 255)
       lands either side of 255 depending on the last bit of max - min.
    """
    from sentence_transformers.util import quantize_embeddings as reference_quantize
    ours, theirs = as_numpy(ours), as_numpy(theirs)
    ours_x, theirs_x = floats
    want = reference_quantize(ours_x, precision=precision, calibration_embeddings=calibration[0])
    assert ours.dtype == want.dtype and np.array_equal(ours, want), name

    low, high = calibration[1].min(axis=0), calibration[1].max(axis=0)
    step = (high - low) / 255  # one bucket, per dimension
    position = (theirs_x - low) / step  # where the reference's floats fall, in buckets
    differ = ours != theirs
    apart = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))[differ]
    edge_distance = np.abs(position - np.round(position))[differ]
    allowed = (np.abs(ours_x - theirs_x) / step)[differ] + 1e-4
    print(f"{name}: {differ.sum()} of {differ.size} values one bucket apart; the reference's "
          f"floats {edge_distance.max(initial=0):.1e} buckets or less from an edge")
    assert np.all(apart == 1) and np.all(edge_distance <= allowed), name


# ---------------------------------------------------------------------------- the snippets

QUICKSTART = """
    from LIB import SentenceTransformer

    model = SentenceTransformer(MODEL)
    embeddings = model.encode(sentences)
    similarities = model.similarity(embeddings, embeddings)
    result = {"embeddings" + UNIT: embeddings, "similarities": similarities,
              "pairwise": model.similarity_pairwise(embeddings[:3], embeddings[3:6]),
              "dim": model.get_embedding_dimension(), "shape": embeddings.shape,
              "old dim name": model.get_sentence_embedding_dimension(),
              "similarity_fn_name": model.similarity_fn_name,
              "max_seq_length": model.max_seq_length,
              "one": model.encode(sentences[0]), "several": model.encode(sentences[:4],
                                                                         batch_size=2)}
    model.similarity_fn_name = "euclidean"  # up to 25 rows: torch.cdist's exact distances
    result["euclidean"] = model.similarity(embeddings[:4], embeddings[:25])
    model.similarity_fn_name = "manhattan"
    result["manhattan"] = model.similarity_pairwise(embeddings[:4], embeddings[4:8])
"""


def test_quickstart_minilm(minilm_path, texts):
    check(QUICKSTART, MODEL=str(minilm_path), sentences=texts, UNIT="_unit")


def test_quickstart_prompts_folder(prompts_path, texts):
    """The folder's default prompt applies, and its similarity function is "dot"."""
    check(QUICKSTART, MODEL=str(prompts_path), sentences=texts, UNIT="")


SEMANTIC_SEARCH = """
    import LIB
    from LIB import SentenceTransformer, util

    embedder = SentenceTransformer(MODEL)
    corpus_embeddings = embedder.encode(corpus, convert_to_tensor=True)
    query_embeddings = embedder.encode(queries, convert_to_tensor=True)
    hits = util.semantic_search(query_embeddings, corpus_embeddings, top_k=5)
    result = {"corpus_embeddings_unit_tensor": corpus_embeddings,
              "ids": [[hit["corpus_id"] for hit in q] for q in hits],
              "scores": np.array([[hit["score"] for hit in q] for q in hits], np.float32),
              "normalized_unit": embedder.encode(corpus, normalize_embeddings=True)}
"""


def test_semantic_search(minilm_path, texts):
    pytest.importorskip("torch")
    check(SEMANTIC_SEARCH, MODEL=str(minilm_path), corpus=texts[3:], queries=texts[:3], np=np)


QUERY_DOCUMENT = """
    from LIB import SentenceTransformer

    model = SentenceTransformer(MODEL)
    query_embeddings = model.encode_query(queries)
    document_embeddings = model.encode_document(documents)
    result = {"queries": query_embeddings, "documents": document_embeddings,
              "scores": model.similarity(query_embeddings, document_embeddings),
              "named": model.encode_query(queries, prompt_name="passage"),
              "no prompt": model.encode_document(documents, prompt=""),
              "query prompt": model.prompts.get("query", ""),
              "default": model.default_prompt_name}
    model = SentenceTransformer(MODEL, prompts={"document": "passage: ", "query": None},
                                default_prompt_name="document")
    result["given prompts"] = model.encode_document(documents)
    result["given default"] = model.encode(documents)
    result["given, query from the folder"] = model.encode_query(queries)
"""


def test_encode_query_and_document(prompts_path, texts):
    """encode_query takes the "query" prompt; encode_document the "document" prompt, which
    sentence-transformers defines ("") when the folder does not, before "passage"."""
    check(QUERY_DOCUMENT, MODEL=str(prompts_path), queries=texts[:8], documents=texts[8:])


def test_encode_document_on_an_older_folder_without_document(tmp_path, prompts_path, texts):
    """A folder saved before sentence-transformers added the "document" default: its
    "passage" prompt is still not what encode_document uses."""
    import shutil
    folder = shutil.copytree(prompts_path, tmp_path / "older")
    path = folder / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    del config["prompts"]["document"], config["prompts"]["query"]
    path.write_text(json.dumps({**config, "default_prompt_name": None}))
    check(QUERY_DOCUMENT, MODEL=str(folder), queries=texts[:8], documents=texts[8:])
    assert minisbert.SentenceTransformer(folder).prompts == {"passage": "passage: "}


PROMPTS = """
    from LIB import SentenceTransformer

    model = SentenceTransformer(MODEL, prompts={"classification": "Classify: "})
    result = {"default": model.encode(sentences), "named": model.encode(sentences,
                                                                         prompt_name="passage"),
              "given": model.encode(sentences, prompt="Represent this sentence for searching "
                                                      "relevant passages: "),
              "empty": model.encode(sentences, prompt=""),
              "merged": model.encode(sentences, prompt_name="classification"),
              "names": sorted(model.prompts)}
"""


def test_prompts(prompts_path, texts):
    check(PROMPTS, MODEL=str(prompts_path), sentences=texts)


TRUNCATE = """
    from LIB import SentenceTransformer

    model = SentenceTransformer(MODEL, truncate_dim=64)
    result = {"cut": model.encode(sentences), "dim": model.get_embedding_dimension(),
              "this call": model.encode(sentences, truncate_dim=32),
              "cut then normalized_unit": model.encode(sentences, truncate_dim=32,
                                                       normalize_embeddings=True)}
    with model.truncate_embeddings(16):
        result["in a with block"] = model.encode(sentences)
    result["after the block"] = model.encode(sentences[:2])
"""


@pytest.mark.parametrize("model", ["minilm", "prompts"])
def test_truncate_dim(model, minilm_path, prompts_path, texts):
    folder = minilm_path if model == "minilm" else prompts_path
    if model == "prompts":  # 32 wide: cut further
        snippet = TRUNCATE.replace("64", "24").replace("32", "12").replace("16", "8")
    else:
        snippet = TRUNCATE
    check(snippet, MODEL=str(folder), sentences=texts)


QUANTIZE = """
    from LIB import SentenceTransformer
    from LIB.util import quantize_embeddings

    model = SentenceTransformer(MODEL)
    result = {precision: model.encode(sentences, precision=precision)
              for precision in ("float32", "int8", "uint8", "binary", "ubinary")}
    embeddings = model.encode(sentences)
    result["calibrated"] = quantize_embeddings(embeddings[:5], precision="int8",
                                               calibration_embeddings=embeddings)
    result["one binary"] = model.encode(sentences[0], precision="binary")
    result["int8 tensor"] = model.encode(sentences, precision="int8", convert_to_tensor=True)
    result["token int8"] = model.encode(sentences, output_value="token_embeddings",
                                        precision="int8")
    result["token floats"] = model.encode(sentences, output_value="token_embeddings")
"""


@pytest.mark.parametrize("model", ["minilm", "prompts"])
def test_precision(model, minilm_path, prompts_path, texts):
    """binary/ubinary exactly equal; int8/uint8 as assert_same_buckets says."""
    pytest.importorskip("torch")
    int8 = ("int8", "uint8", "calibrated", "int8 tensor", "token int8")
    ours, theirs = check(QUANTIZE, quantized=int8,
                         MODEL=str(minilm_path if model == "minilm" else prompts_path),
                         sentences=texts)
    floats = ours["float32"], theirs["float32"]
    for key in ("int8", "uint8", "int8 tensor"):
        assert_same_buckets(key, ours[key], theirs[key], floats, floats,
                            "uint8" if key == "uint8" else "int8")
    assert_same_buckets("calibrated", ours["calibrated"], theirs["calibrated"],
                        (floats[0][:5], floats[1][:5]), floats, "int8")
    tokens = [np.concatenate([as_numpy(t) for t in side["token floats"]])
              for side in (ours, theirs)]
    assert_same_buckets("token int8", np.concatenate(ours["token int8"]),
                        np.concatenate(theirs["token int8"]), tuple(tokens), tuple(tokens),
                        "int8")


OUTPUTS = """
    from LIB import SentenceTransformer

    model = SentenceTransformer(MODEL)
    tokens = model.encode(sentences, output_value="token_embeddings")
    everything = model.encode(sentences, output_value=None)
    result = {"token_embeddings": tokens,
              "one text's tokens": model.encode(sentences[0], output_value="token_embeddings"),
              "sentence_embedding": [e["sentence_embedding"] for e in everything],
              "unpadded": [e["token_embeddings"][:int(e["attention_mask"].sum())]
                           for e in everything],
              "input_ids": [e["input_ids"][e["input_ids"] != 0] for e in everything],
              "list": model.encode(sentences[:3], convert_to_numpy=False),
              "tensor": model.encode(sentences[:3], convert_to_tensor=True)}
"""


@pytest.mark.parametrize("model", ["minilm", "prompts"])
def test_outputs(model, minilm_path, prompts_path, texts):
    """token_embeddings (the prompt's tokens included), output_value=None, a list of vectors,
    a tensor."""
    pytest.importorskip("torch")
    check(OUTPUTS, MODEL=str(minilm_path if model == "minilm" else prompts_path),
          sentences=texts)


def test_empty_input(minilm_path):
    """minisbert keeps [0, dim] (sentence-transformers gives a 1-D empty array)."""
    model = minisbert.SentenceTransformer(minilm_path)
    assert model.encode([]).shape == (0, 384)
    assert model.encode([], convert_to_numpy=False) == []
    assert model.encode([], output_value="token_embeddings") == []
    assert model.encode([], precision="int8").shape == (0, 384)


# ---------------------------------------------------------------------------- the same class

def test_one_class(minilm_path):
    """load() and SentenceModel are the same class, loading the same way."""
    assert minisbert.SentenceModel is minisbert.SentenceTransformer
    loaded, built = minisbert.load(minilm_path), minisbert.SentenceTransformer(minilm_path)
    assert type(loaded) is type(built)
    assert np.array_equal(loaded.encode(SENTENCES), built.encode(SENTENCES))


def test_max_seq_length_setter(minilm_path, minilm_reference, monkeypatch):
    model = minisbert.SentenceTransformer(minilm_path)
    long = " ".join(SENTENCES * 10)
    model.max_seq_length = 16
    assert model.max_seq_length == 16 and len(model.tokenize([long])[0]) == 16
    monkeypatch.setattr(minilm_reference, "max_seq_length", 16)  # restored after the test
    print(compare("max_seq_length 16_unit", model.encode([long, "short"]),
                  minilm_reference.encode([long, "short"])))
    with pytest.raises(ArgumentError, match=r"max_seq_length=513 is out of range: this "
                                            r"model's position table holds at most 512") as e:
        model.max_seq_length = 513
    print(e.value)
    assert model.max_seq_length == 16


def test_download_by_hub_name(tmp_path, minilm_path, monkeypatch):
    """A bare name is sentence-transformers/<name>, fetched into cache_folder; with
    local_files_only a model that is not here is an error, not a download."""
    from test_download import NAME, FakeHub
    monkeypatch.chdir(tmp_path)
    hub = FakeHub({NAME: minilm_path})
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    try:
        with pytest.raises(minisbert.ModelFileMissing, match="all-MiniLM-L6-v2"):
            minisbert.SentenceTransformer("all-MiniLM-L6-v2", cache_folder=tmp_path / "cache",
                                          local_files_only=True)
        assert hub.log == []
        model = minisbert.SentenceTransformer("all-MiniLM-L6-v2", cache_folder=tmp_path / "cache")
    finally:
        hub.close()
    assert (tmp_path / "cache" / NAME / "model.safetensors").is_file()
    assert np.array_equal(model.encode(SENTENCES), minisbert.load(minilm_path).encode(SENTENCES))
    again = minisbert.SentenceTransformer(NAME, cache_folder=tmp_path / "cache",
                                          local_files_only=True)  # now here: no hub needed
    assert again.dim == 384


# ---------------------------------------------------------------------------- refused

REFUSED_CONSTRUCTOR = [
    ({"device": "cuda"}, "device='cuda': minisbert runs on the CPU only"),
    ({"modules": []}, "modules: minisbert builds a model only from a saved folder"),
    ({"trust_remote_code": True}, "never code from a model repository"),
    ({"model_kwargs": {"torch_dtype": "float16"}}, "model_kwargs: these go to transformers'"),
    ({"processor_kwargs": {"x": 1}}, "processor_kwargs: these go to transformers'"),
    ({"config_kwargs": {"x": 1}}, "config_kwargs: these go to transformers'"),
    ({"use_kernels": True}, "use_kernels/kernel_config: these are torch kernels"),
    ({"backend": "onnx"}, "backend='onnx': minisbert is its own NumPy backend"),
    ({"token": "hf_x"}, "token: minisbert downloads public models only"),
    ({"similarity_fn_name": "maxsim"}, "similarity_fn_name 'maxsim' is not one of 'cosine'"),
    ({"default_prompt_name": "query"}, "default_prompt_name 'query' is not one of the prompts"),
    ({"prompts": ["query: "]}, "prompts=\\['query: '\\]: pass a dict"),
    ({"truncate_dim": 500}, "truncate_dim"),
]


@pytest.mark.parametrize("kwargs, message", REFUSED_CONSTRUCTOR,
                         ids=[next(iter(k)) for k, _ in REFUSED_CONSTRUCTOR])
def test_refused_constructor_arguments(minilm_path, kwargs, message):
    with pytest.raises(minisbert.MinisbertError, match=message) as e:
        minisbert.SentenceTransformer(minilm_path, **kwargs)
    print(f"\n{e.value}")


def test_accepted_and_ignored(minilm_path):
    model = minisbert.SentenceTransformer(minilm_path, device="cpu", backend="torch",
                                          model_card_data=object(), trust_remote_code=False,
                                          revision="main", local_files_only=True)
    assert model.device == "cpu"


def test_no_model(minilm_path):
    with pytest.raises(ArgumentError, match="minisbert loads saved model folders"):
        minisbert.SentenceTransformer()


REFUSED_ENCODE = [
    ({"device": "cuda:0"}, ArgumentError, "minisbert runs on the CPU only"),
    ({"device": ["cpu", "cpu"]}, ArgumentError, "several processes"),
    ({"pool": {}}, ArgumentError, "several processes"),
    ({"chunk_size": 8}, ArgumentError, "several processes"),
    ({"task": "query"}, ArgumentError, "encode\\(\\) got 'task'"),
    ({"batch_size": 0}, ArgumentError, "batch_size must be a positive integer"),
    ({"output_value": "cls"}, ArgumentError, "output_value='cls'"),
    ({"precision": "float16"}, EmbeddingInputError, "precision 'float16' is not supported"),
    ({"precision": "int8", "output_value": None}, EmbeddingInputError, "quantize the ones"),
]


@pytest.mark.parametrize("kwargs, error, message", REFUSED_ENCODE,
                         ids=[str(k) for k, *_ in REFUSED_ENCODE])
def test_refused_encode_arguments(minilm, kwargs, error, message):
    with pytest.raises(error, match=message) as e:
        minilm.encode(SENTENCES, **kwargs)
    print(f"\n{e.value}")


def test_convert_to_tensor_without_torch(minilm, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(MissingDependencyError, match="torch is not installed") as e:
        minilm.encode(SENTENCES, convert_to_tensor=True)
    print(f"\n{e.value}")
    assert minilm.encode(SENTENCES).shape == (6, 384)  # the NumPy path needs no torch
