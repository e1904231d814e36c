"""Running the `minisbert` command as a user would, for test_cli, test_search and test_download."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "input.txt"
RESULT = re.compile(r"Text: (.*?) \(Similarity:(-?\d+\.\d{3})\)$", re.M)


def run_cli(*args, stdin: str = "", cwd=None, env: dict | None = None, timeout: float = 180):
    """`python -m minisbert ARGS` with `stdin` typed in; returns the CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8",
                # One BLAS thread: this 2-core machine runs other test suites at the same time,
                # and OpenBLAS's spinning threads then make a 1 s search take 10 s or more.
                "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "minisbert", *map(str, args)], input=stdin,
                          capture_output=True, text=True, encoding="utf-8", cwd=cwd, env=full_env,
                          timeout=timeout)


def results(stdout: str) -> list[tuple[str, float]]:
    """The (text, similarity) pairs a search printed, in order."""
    return [(text, float(score)) for text, score in RESULT.findall(stdout)]


def assert_one_line_error(proc, *fragments: str) -> str:
    """A user error: non-zero exit, exactly one stderr line naming the fragments, no traceback."""
    err = proc.stderr.strip()
    print(f"\nstderr: {err}")
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err
