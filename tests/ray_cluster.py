"""A two-node Ray cluster on 127.0.0.1 that embeds a JSON-lines file with minisbert.distributed.

    python tests/ray_cluster.py MODEL INPUT.jsonl OUT_DIR

Run by test_corpora inside a network namespace of its own, where only loopback exists: Ray's
servers listen on every interface of their namespace, so there they are reachable on loopback
alone. Starts a head node and a second node (`ray start --block`, two logical CPUs each, each in a
new session), embeds the file's "text" column on 2 actors, writes OUT_DIR/index (a minisbert index)
and OUT_DIR/parquet, and stops every process of both sessions, within a fixed time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEADLINE = 240  # seconds for the whole run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sids: set[int]) -> list[int]:
    """Pids of the live processes in the given sessions (what `ray start` and its servers
    spawned)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0]: the state (Z: ended, waiting to be reaped); fields[3]: the session id
            if fields[0] != "Z" and int(fields[3]) in sids:
                found.append(int(entry))
    return found


def _timeout(*_):
    raise SystemExit(f"the Ray run took more than {DEADLINE} s")


def main(model: str, source: str, out: str) -> None:
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _timeout)  # the cleanup below runs on timeout too
    signal.alarm(DEADLINE)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray puts Unix sockets in it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # Two logical CPUs per node: one for an embedding actor, one for Ray Data's read tasks.
    common = ["--block", "--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    nodes = []
    try:
        nodes.append(subprocess.Popen(
            [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={temp}", *common], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while subprocess.run([ray_bin, "status", f"--address=127.0.0.1:{port}"], env=env,
                             capture_output=True).returncode != 0:
            if time.monotonic() - start > 90 or nodes[0].poll() is not None:
                raise SystemExit("the Ray head node did not start")
            time.sleep(1)
        nodes.append(subprocess.Popen(
            [ray_bin, "start", f"--address=127.0.0.1:{port}", *common], env=env,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        import ray
        from minisbert import distributed
        ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR", log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() - start > 120:
                raise SystemExit("the second Ray node did not join")
            time.sleep(0.5)
        print(f"cluster of {len(ray.nodes())} nodes up in {time.monotonic() - start:.0f} s",
              flush=True)

        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ds = ray.data.read_json(source)
        ds = distributed.embed(ds, model, column="text", workers=2, batch_rows=128)
        distributed.write_index(ds, Path(out) / "index", model, column="text", id_column="id")
        ds.write_parquet(str(Path(out) / "parquet"))
        nodes_used = {n["NodeManagerAddress"] + ":" + str(n["NodeManagerPort"])
                      for n in ray.nodes() if n["Alive"]}
        print(f"embedded on {len(nodes_used)} nodes in {time.monotonic() - start:.0f} s",
              flush=True)
        ray.shutdown()
    finally:
        signal.alarm(0)
        sids = {os.getsid(p.pid) for p in nodes if p.poll() is None} | {p.pid for p in nodes}
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        stop_by = time.monotonic() + 20
        while session_members(sids) and time.monotonic() < stop_by:
            time.sleep(0.5)
        killed = session_members(sids)  # whatever did not stop on SIGTERM
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stop_by = time.monotonic() + 10  # SIGKILL is delivered at once, the exit takes a moment
        while session_members(sids) and time.monotonic() < stop_by:
            time.sleep(0.2)
        if killed:
            print(f"{len(killed)} process(es) needed SIGKILL", flush=True)
        for p in nodes:
            p.wait(timeout=30)
        left = session_members(sids)
        print(f"stopped; {len(left)} processes left", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
