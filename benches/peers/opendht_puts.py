#!/usr/bin/python3
"""Puts per second with --conc in flight on OpenDHT: the phase the shared harness
(../shared/peers/opendht/opendht_bench.py) lacks, built on its helpers and with its
definitions (N nodes in this one process on 127.0.0.1, every node joining through
node 0, rate limiter off, the same --form-window of quiet before measuring).

  /usr/bin/python3 opendht_puts.py --nodes 64 --ops 1000 --conc 32

Prints one line `RESULT {json}` with put_tput_ops_s (puts completed per second,
--ops puts of 4-byte values under fresh keys from node 1 with --conc in flight)
and put_tput_ok (those whose done callback said ok).
"""
import argparse
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "peers", "opendht"))
from common import arm_deadline, emit  # noqa: E402
from opendht_bench import LOOPBACK, OP_TIMEOUT, good_entries, val_of, wait_until  # noqa: E402

import opendht as dht  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--form-window", type=float, default=15.0)
    ap.add_argument("--deadline", type=int, default=300)
    a = ap.parse_args()
    arm_deadline(a.deadline, "opendht_puts")
    nodes = []
    t0 = time.perf_counter()
    for _ in range(a.nodes):
        cfg = dht.DhtConfig()
        cfg.setRateLimit(-1, -1)
        r = dht.DhtRunner()
        r.run(ipv4=LOOPBACK, port=0, config=cfg)
        assert r.getBound(socket.AF_INET).isLoopback()
        if nodes:
            r.bootstrap(LOOPBACK, str(nodes[0].getBound(socket.AF_INET).getPort()))
        nodes.append(r)
    wait_until(lambda: all(good_entries(r) >= 1 for r in nodes), 60)
    while time.perf_counter() - t0 < a.form_window:
        time.sleep(0.1)

    sem = threading.Semaphore(a.conc)
    lock = threading.Lock()
    state = {"done": 0, "ok": 0}
    finished = threading.Event()

    def done(ok, _nodes):
        with lock:
            state["done"] += 1
            state["ok"] += bool(ok)
            if state["done"] == a.ops:
                finished.set()
        sem.release()
    t = time.perf_counter()
    for i in range(a.ops):
        if not sem.acquire(timeout=OP_TIMEOUT):
            break
        nodes[1].put(dht.InfoHash.get("p%04d" % i), dht.Value(val_of(i)), done_cb=done)
    finished.wait(OP_TIMEOUT * 2)
    took = time.perf_counter() - t
    res = {"impl": "opendht", "nodes": a.nodes, "ops": a.ops, "conc": a.conc,
           "put_tput_ops_s": round(state["done"] / took, 1), "put_tput_ok": state["ok"]}
    stopped = threading.Semaphore(0)
    for r in nodes:
        r.shutdown(lambda: stopped.release())
    clean = all(stopped.acquire(timeout=20) for _ in nodes)
    if clean:
        for r in nodes:
            r.join()
    emit(res)
    os._exit(0 if clean else 4)


if __name__ == "__main__":
    main()
