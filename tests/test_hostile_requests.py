"""Requests and connections to `minisbert serve` made by an attacker (or a broken client):
each malformed request gets a 4xx with the error body, never a 500 with a traceback in the
server's log; a client that leaves in the middle of its body is no error at all; a connection
that sends its headers or its body too slowly is closed at the read deadline; an empty API key
is refused at start, and a key file keeps the key out of the process list.

One server runs for this file, with `--read-timeout 2` and the key in a file; the slow
clients are raw sockets on 127.0.0.1, each bounded in time and closed by the test."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from cli_support import assert_one_line_error, run_cli
from test_serve import KEY, MAIN, Server, _need_serving_stack, _post, folders  # noqa: F401

READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(folders, tmp_path_factory):  # noqa: F811
    _need_serving_stack()
    root = tmp_path_factory.mktemp("hostile")
    key_file = root / "key.txt"
    key_file.write_text(KEY + "\n")  # as `echo KEY > key.txt` writes it
    srv = Server(["--model", folders[MAIN], "--api-key-file", key_file,
                  "--read-timeout", READ_TIMEOUT], root / "server.log")
    yield srv
    srv.stop()


def _log_is_clean(server) -> None:
    log = Path(server.log).read_text()
    assert "Traceback" not in log and "error while answering" not in log, log[-3000:]


# ---------------------------------------------------------------------------- malformed bodies

DEEP = b"[" * 100_000 + b"]" * 100_000
OPENAI = {
    "model a list": ({"input": "a", "model": [MAIN]}, 400, "model"),
    "model an object": ({"input": "a", "model": {"name": MAIN}}, 400, "model"),
    "model a number": ({"input": "a", "model": 5}, 400, "model"),
    "encoding_format 0": ({"input": "a", "encoding_format": 0}, 400, "encoding_format"),
    "encoding_format false": ({"input": "a", "encoding_format": False}, 400, "encoding_format"),
    "encoding_format []": ({"input": "a", "encoding_format": []}, 400, "encoding_format"),
    "encoding_format {}": ({"input": "a", "encoding_format": {}}, 400, "encoding_format"),
    'encoding_format ""': ({"input": "a", "encoding_format": ""}, 400, "encoding_format"),
    "encoding_format a long list": ({"input": "a", "encoding_format": ["x"] * 100_000}, 400,
                                    "encoding_format"),
    "dimensions a long list": ({"input": "a", "dimensions": [1] * 100_000}, 400, "dimensions"),
    "nested 100,000 deep": (DEEP, 400, None),
    "input nested 100,000 deep": (b'{"input": ' + DEEP + b"}", 400, None),
    "a 5,000-digit number": (b'{"input": "a", "dimensions": ' + b"9" * 5000 + b"}", 400, None),
}


@pytest.mark.parametrize("case", OPENAI)
def test_malformed_openai_request_is_a_4xx(server, case):
    body, status, param = OPENAI[case]
    r = _post(server, "/v1/embeddings", **({"content": body} if isinstance(body, bytes)
                                           else {"body": body}))
    print(f"{case}: {r.status_code} {r.text[:300]}")
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert len(error["message"]) < 1000
    _log_is_clean(server)


def test_encoding_format_null_is_float(server):
    """OpenAI's clients send null for "not given": the default, float."""
    r = _post(server, "/v1/embeddings", {"input": "a", "encoding_format": None})
    assert r.status_code == 200 and isinstance(r.json()["data"][0]["embedding"][0], float)


TEI = {
    "truncation_direction 5": ({"inputs": "a", "truncation_direction": 5}, 422),
    "truncation_direction []": ({"inputs": "a", "truncation_direction": []}, 422),
    "truncation_direction {}": ({"inputs": "a", "truncation_direction": {}}, 422),
    "truncation_direction up": ({"inputs": "a", "truncation_direction": "up"}, 422),
    "truncation_direction Left": ({"inputs": "a", "truncation_direction": "Left"}, 422),
    "model a list": ({"inputs": "a", "model": [MAIN]}, 400),
    "nested 100,000 deep": (DEEP, 400),
}


@pytest.mark.parametrize("case", TEI)
def test_malformed_embed_request_is_a_4xx(server, case):
    body, status = TEI[case]
    r = _post(server, "/embed", **({"content": body} if isinstance(body, bytes)
                                   else {"body": body}))
    print(f"{case}: {r.status_code} {r.text[:300]}")
    assert r.status_code == status and set(r.json()) == {"error", "error_type"}
    _log_is_clean(server)


def test_truncation_direction_right_in_either_case_is_accepted(server):
    for direction in ("right", "Right"):
        r = _post(server, "/embed", {"inputs": "a", "truncation_direction": direction})
        assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------- raw connections

def _connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT + 10)
    return s


def _headers(length: int | None = None, path: str = "/v1/embeddings") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {KEY}",
             "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _until_closed(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Read until the server closes the connection: (seconds it took, what it sent)."""
    start, got = time.monotonic(), b""
    s.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    else:
        pytest.fail(f"the server kept the connection open for {limit} s")
    return time.monotonic() - start, got


def _trickle(s: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send `data` a byte every `every` seconds until the server closes the connection."""
    start, got = time.monotonic(), b""
    s.settimeout(every)
    for byte in data:
        if time.monotonic() - start > limit:
            pytest.fail(f"the server still read a byte every {every} s after {limit} s")
        try:
            s.sendall(bytes([byte]))
            chunk = s.recv(65536)  # waits `every` seconds, unless the server answers or closes
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if not chunk:
            break
        got += chunk
        if got.endswith(b"}"):  # the whole 408 arrived; its close follows
            rest = _until_closed(s, READ_TIMEOUT + 5)[1]
            return time.monotonic() - start, got + rest
    return time.monotonic() - start, got


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_a_connection_that_sends_nothing_is_closed(server):
    with _connect(server) as s:
        seconds, got = _until_closed(s, READ_TIMEOUT + 10)
    print(f"\nsilent connection closed after {seconds:.1f} s (deadline {READ_TIMEOUT} s)")
    assert READ_TIMEOUT - 0.5 < seconds < READ_TIMEOUT + 1.5 and got == b""


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_headers_a_byte_at_a_time_are_closed_at_the_deadline(server):
    with _connect(server) as s:
        seconds, got = _trickle(s, _headers(2), every=0.5, limit=READ_TIMEOUT + 10)
    print(f"\nheaders trickled: closed after {seconds:.1f} s, answer {got[:40]!r}")
    assert seconds < READ_TIMEOUT + 1.5 and got == b""


def test_a_body_a_byte_at_a_time_gets_408_and_is_closed(server):
    body = json.dumps({"input": "a " * 50}).encode()
    with _connect(server) as s:
        s.sendall(_headers(len(body)))
        seconds, got = _trickle(s, body, every=0.5, limit=READ_TIMEOUT + 10)
    print(f"\nbody trickled: closed after {seconds:.1f} s, answer {got[:60]!r}")
    assert got.startswith(b"HTTP/1.1 408") and b"request_timeout" in got
    assert seconds < READ_TIMEOUT + 1.5
    _log_is_clean(server)


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_a_second_request_trickled_on_a_kept_alive_connection_is_closed(server):
    body = json.dumps({"input": "a"}).encode()
    with _connect(server) as s:
        s.sendall(_headers(len(body)) + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        seconds, got = _trickle(s, _headers(2), every=0.5, limit=READ_TIMEOUT + 10)
    print(f"\nsecond request trickled: closed after {seconds:.1f} s")
    assert seconds < READ_TIMEOUT + 1.5


def test_a_request_sent_in_pieces_within_the_deadline_is_answered(server):
    """The control: headers and body in a few pieces, all within the deadline."""
    body = json.dumps({"input": "a"}).encode()
    with _connect(server) as s:
        head = _headers(len(body))
        for piece in (head[:20], head[20:], body[:5], body[5:]):
            s.sendall(piece)
            time.sleep(0.3)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_client_that_closes_mid_body_is_no_server_error(server):
    with _connect(server) as s:
        s.sendall(_headers(100) + b'{"input": ')
        time.sleep(0.2)
    time.sleep(0.5)  # the server notices the close
    assert _post(server, "/v1/embeddings", {"input": "a"}).status_code == 200
    _log_is_clean(server)


# ---------------------------------------------------------------------------- the API key

def test_the_key_from_a_file_is_required_and_not_in_the_process_list(server):
    assert _post(server, "/v1/embeddings", {"input": "a"}).status_code == 200
    assert _post(server, "/v1/embeddings", {"input": "a"}, key=None).status_code == 401
    r = _post(server, "/v1/embeddings", {"input": "a"}, key="wrong")
    assert r.status_code == 401
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    print(f"\nthe server's command line: {cmdline.replace(bytes(1), b' ')[:300]!r}")
    assert KEY.encode() not in cmdline


def test_a_bearer_without_key_is_refused(server):
    """`Authorization: Bearer ` (sent raw: httpx refuses a header ending in a space)."""
    body = b'{"input": "a"}'
    for header in (b"Bearer ", b"Bearer", b"Bearer  "):
        with _connect(server) as s:
            s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                      + header + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), (header, answer[:200])


@pytest.mark.parametrize("how", ["MINISBERT_API_KEY=", "--api-key ''", "an empty key file",
                                 "a key file of a newline", "MINISBERT_API_KEY_FILE empty"])
def test_an_empty_api_key_refuses_to_start(tmp_path, folders, how):  # noqa: F811
    for module in ("starlette", "uvicorn", "prometheus_client"):  # else serve names the extra
        pytest.importorskip(module)
    empty = tmp_path / "key.txt"
    empty.write_text("\n" if "newline" in how else "")
    args, env = ["serve", "--model", folders[MAIN], "--port", "1"], {}
    if how == "MINISBERT_API_KEY=":
        env["MINISBERT_API_KEY"] = ""
    elif how == "--api-key ''":
        args += ["--api-key", ""]
    elif how == "MINISBERT_API_KEY_FILE empty":
        env["MINISBERT_API_KEY_FILE"] = str(empty)
    else:
        args += ["--api-key-file", empty]
    start = time.monotonic()
    proc = run_cli(*args, env=env, timeout=60)
    print(f"\n{how}: {proc.stderr.strip()} ({time.monotonic() - start:.1f} s)")
    assert_one_line_error(proc, "empty API key")
