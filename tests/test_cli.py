"""The `minisbert` command driven as a user drives it: a subprocess, questions typed on stdin.

Every printed result is checked against sentence-transformers run here on the same texts:
its embeddings, util.cos_sim, and the ranking they give (printed scores have 3 decimals).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import minisbert
from minisbert import progress
from minisbert.cli import PROMPT
from minisbert.index import read_index

from cli_support import EXAMPLE, assert_one_line_error, results, run_cli

st = pytest.importorskip("sentence_transformers")

EXAMPLE_LINES = [t.strip() for t in EXAMPLE.read_text(encoding="utf-8").splitlines() if t.strip()]


@pytest.fixture(scope="module")
def reference(minilm_path):
    """Scores of every text for a query, by sentence-transformers: reference(texts, query)."""
    model = st.SentenceTransformer(str(minilm_path), device="cpu")
    cache = {}

    def scores(texts, query):
        if tuple(texts) not in cache:
            cache[tuple(texts)] = model.encode(texts)
        return st.util.cos_sim(model.encode(query), cache[tuple(texts)])[0].numpy()
    return scores


def assert_matches_reference(printed, texts, query, k, reference):
    """The printed top k: the reference's scores rank by rank, and each printed text holds the
    reference score of its rank (two texts may swap only if their scores tie)."""
    scores = reference(texts, query)
    order = np.argsort(-scores, kind="stable")
    print(f"\nquery {query!r}")
    for rank, (text, score) in enumerate(printed):
        best = order[rank] if rank < len(order) else None
        print(f"  ours {score:.3f} {text[:60]!r}\n  ref  {scores[best]:.4f} {texts[best][:60]!r}")
    assert len(printed) == min(k, len(texts))
    for rank, (text, score) in enumerate(printed):
        expected = scores[order[rank]]
        assert abs(score - expected) <= 5e-4 + 1e-5, (rank, text, score, expected)
        assert text in texts, text
        assert abs(scores[texts.index(text)] - expected) < 1e-4, (rank, text)


def test_interactive_loop_answers_each_question_until_q(minilm_path, reference):
    questions = ["How fast does the speech model run on the phone?",
                 "明日は雨が降りますか？",
                 "When can I visit the library?"]
    stdin = "\n".join(questions) + "\n\nq\nHow many moons does Jupiter have?\n"
    proc = run_cli("search", "-i", EXAMPLE, "--model", minilm_path, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # One prompt per line read: 3 questions, the blank line (asked again), and q; none after q.
    answers = proc.stdout.split(PROMPT)[1:]
    assert len(answers) == 5
    for question, answer in zip(questions, answers):
        assert_matches_reference(results(answer), EXAMPLE_LINES, question, 1, reference)
    assert results(answers[3]) == [] and answers[4].strip() == ""


@pytest.mark.parametrize("ending", ["ｑ\nWhat about the piano?\n", "", "\n"],
                         ids=["fullwidth-q", "eof-without-newline", "eof"])
def test_fullwidth_q_and_end_of_input_end_the_loop(minilm_path, reference, ending):
    question = "Is the library open on Monday?"
    stdin = question + ("\n" + ending if ending != "" else "")
    proc = run_cli("search", "-i", EXAMPLE, "--model", minilm_path, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    printed = results(proc.stdout)
    assert_matches_reference(printed, EXAMPLE_LINES, question, 1, reference)  # and no more
    if ending.startswith("ｑ"):
        assert proc.stdout.endswith(PROMPT + "\n")  # a pipe echoes no ｑ: the command ends the line
    else:
        assert proc.stdout.endswith(PROMPT + "\n")  # EOF ends the prompt's line, for the shell


@pytest.mark.parametrize("question", ["Which fish is this restaurant known for?",
                                      "スマホで推論はどれくらい速いですか？"])
def test_prompt_answers_once_with_top_k(minilm_path, reference, question):
    proc = run_cli("search", "-i", EXAMPLE, "--model", minilm_path, "-p", question, "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert PROMPT not in proc.stdout
    assert len(proc.stdout.splitlines()) == 3
    assert_matches_reference(results(proc.stdout), EXAMPLE_LINES, question, 3, reference)


SPLIT_FILE = """\
The kettle is boiling. Please make the tea! Is the milk in the fridge?
東京は晴れです。大阪は雨でした！京都はどうですか？

Version 3.14 of the tool is on example.com today.
A line without a final stop
"""
SENTENCES = ["The kettle is boiling.", "Please make the tea!", "Is the milk in the fridge?",
             "東京は晴れです。", "大阪は雨でした！", "京都はどうですか？",
             "Version 3.14 of the tool is on example.com today.", "A line without a final stop"]


@pytest.mark.parametrize("split", ["lines", "sentences"])
def test_split_modes(tmp_path, minilm_path, reference, split):
    path = tmp_path / "notes.txt"
    path.write_text(SPLIT_FILE, encoding="utf-8")
    texts = SENTENCES if split == "sentences" else [l for l in SPLIT_FILE.splitlines() if l]
    question = "Is it raining in Osaka?"
    proc = run_cli("search", "-i", path, "--model", minilm_path, "--split", split,
                   "-p", question, "-k", "20")
    assert proc.returncode == 0, proc.stderr
    printed = results(proc.stdout)
    assert sorted(t for t, _ in printed) == sorted(texts)  # every text, each exactly once
    assert_matches_reference(printed, texts, question, 20, reference)


def test_utf8_bom_and_other_encodings(tmp_path, minilm_path, reference):
    lines = ["Weather report", "明日は晴れでしょう。", "The shop opens at nine."]
    question = "天気はどうですか"
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    proc = run_cli("search", "-i", bom, "--model", minilm_path, "-p", question, "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert "\ufeff" not in proc.stdout  # the BOM is not part of the first text
    assert_matches_reference(results(proc.stdout), lines, question, 3, reference)

    sjis = tmp_path / "sjis.txt"
    sjis.write_bytes("\n".join(lines).encode("cp932"))
    proc = run_cli("search", "-i", sjis, "--model", minilm_path, "-p", question)
    first_bad = len("Weather report\n")  # the first byte of the first Japanese character
    assert_one_line_error(proc, str(sjis), f"at byte {first_bad}", "--encoding")
    proc = run_cli("search", "-i", sjis, "--model", minilm_path, "-p", question, "-k", "3",
                   "--encoding", "cp932")
    assert proc.returncode == 0, proc.stderr
    assert_matches_reference(results(proc.stdout), lines, question, 3, reference)


def test_user_errors_are_one_line(tmp_path, minilm_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\t\n")
    cases = [
        (["search", "-i", tmp_path / "missing.txt", "--model", minilm_path, "-p", "x"],
         ["missing.txt", "No such file"]),
        (["search", "-i", blank, "--model", minilm_path, "-p", "x"], ["blank.txt", "no text"]),
        # The default model is not on this machine: say how to get it.
        (["search", "-i", EXAMPLE, "-p", "x"],
         ["paraphrase-multilingual-mpnet-base-v2",
          "minisbert download sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
          "weights/"]),
        (["search", "-i", EXAMPLE, "--model", tmp_path / "no-such-folder", "-p", "x"],
         ["no-such-folder"]),
        (["encode", "-i", EXAMPLE, "-o", tmp_path / "idx", "--model", minilm_path,
          "--encoding", "klingon"], ["unknown encoding"]),
        (["search", "--index", tmp_path, "-p", "x"], ["not a minisbert index"]),
    ]
    env = {"MINISBERT_CACHE": str(tmp_path / "cache")}
    for args, fragments in cases:
        assert_one_line_error(run_cli(*args, cwd=tmp_path, env=env), *fragments)


def test_encode_then_search_the_saved_index(tmp_path, minilm_path, reference):
    idx = tmp_path / "idx"
    proc = run_cli("encode", "-i", EXAMPLE, "-o", idx, "--model", minilm_path)
    assert proc.returncode == 0, proc.stderr
    index = read_index(idx)
    ref = st.SentenceTransformer(str(minilm_path), device="cpu").encode(EXAMPLE_LINES)
    diff = np.abs(index.embeddings - ref).max()
    print(f"\nindex embeddings vs sentence-transformers: maxdiff = {diff:.2e}")
    assert index.texts == EXAMPLE_LINES and diff < 1e-5

    # No --model: the index's own model is found where it was made.
    question = "Where can I see old Japanese prints?"
    proc = run_cli("search", "--index", idx, "-p", question, "-k", "2")
    assert proc.returncode == 0, proc.stderr
    assert_matches_reference(results(proc.stdout), EXAMPLE_LINES, question, 2, reference)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("n_texts, show, terminal, drawn", [
    (4, None, True, True),      # auto: a terminal and enough texts
    (2, None, True, False),     # auto: too few texts to bother
    (4, None, False, False),    # auto: stderr is a file or a pipe
    (4, True, False, True),     # asked for
    (4, False, True, False),    # refused
])
def test_encode_progress_bar(minilm_path, monkeypatch, n_texts, show, terminal, drawn):
    monkeypatch.setattr(progress, "AUTO_MIN_TEXTS", 3)
    stderr = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    model = minisbert.load(minilm_path)
    model.encode([f"text number {i}" for i in range(n_texts)], batch_size=2,
                 show_progress_bar=show)
    out = stderr.getvalue()
    print(f"\nstderr: {out!r}")
    if drawn:
        assert "100%|" in out and f"{n_texts}/{n_texts} texts" in out and out.endswith("\n")
        assert "\rEncoding  50%|" in out  # after the first batch, redrawn in place
    else:
        assert out == ""
