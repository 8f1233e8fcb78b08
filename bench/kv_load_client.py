#!/usr/bin/python3
"""Load client for bench/migration_bench.py: a steady, pipelined GET/SET mix against kvstore on the
source host that follows the service to the target host when the source refuses or closes.

Keys are the ones DEBUG POPULATE made in the benchmark's fill: chunks of --chunk keys, chunk
starting at key number F named k<F>:0 .. k<F>:<n-1> (apps/kvstore/trusted/kv_engine.cpp). GETs read
random keys of that set (and check a --value-size bulk comes back); SETs overwrite random keys of
it with --value-size values, so DBSIZE stays the populated count and the heap keeps its size.

Prints one JSON line per --interval (default 100 ms): {"t": unix time, "ops": replies that were not
errors in that interval, "host": "a"|"b"}; a line {"t", "event": "switch", ...} when it moves to
the target; and at the end (stop file, SIGTERM or --duration) {"summary": {...}} with the longest
time between two answered round trips (client-gap-ms), GET misses, bad values and errors.

Usage: kv_load_client.py --source HOST:PORT --target HOST:PORT --keys N [--chunk 50000]
                         [--pipeline 32] [--set-ratio 0.2] [--stop-file PATH]
Run it inside the client's network namespace (ip netns exec <prefix>-a ...): the source address
exists only there, the target is reached over the veth.
"""
import argparse
import json
import random
import signal
import socket
import sys
import threading
import time


def parse(hp):
    h, p = hp.rsplit(":", 1)
    return h, int(p)


class Conn:
    """RESP over one socket: send a pipeline, read exactly that many replies."""

    def __init__(self, addr, timeout):
        self.s = socket.create_connection(addr, timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(0.5)  # recv wakes up to look at the stop flag
        self.buf = b""
        self.pos = 0

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _more(self, stop):
        while True:
            try:
                chunk = self.s.recv(1 << 18)
            except socket.timeout:
                if stop.is_set():
                    raise OSError("stopped")
                continue
            if not chunk:
                raise OSError("closed")
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
            return

    def _line(self, stop):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._more(stop)

    def reply(self, stop):
        """One reply: ('+', text) | ('-', text) | (':', int) | ('$', bytes or None)."""
        line = self._line(stop)
        kind = line[:1]
        if kind == b"$":
            n = int(line[1:])
            if n < 0:
                return "$", None
            while len(self.buf) - self.pos < n + 2:
                self._more(stop)
            v = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return "$", v
        if kind == b":":
            return ":", int(line[1:])
        if kind in (b"+", b"-"):
            return kind.decode(), line[1:].decode(errors="replace")
        raise OSError(f"unexpected reply {line[:40]!r}")

    def pipeline(self, req, n, stop):
        self.s.sendall(req)
        return [self.reply(stop) for _ in range(n)]


def bulk(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="HOST:PORT of kvstore on the source (host a)")
    ap.add_argument("--target", required=True, help="HOST:PORT of kvstore on the target (host b)")
    ap.add_argument("--keys", type=int, required=True, help="keys DEBUG POPULATE made")
    ap.add_argument("--chunk", type=int, default=50000, help="keys per DEBUG POPULATE call (prefix k<first>)")
    ap.add_argument("--value-size", type=int, default=4000)
    ap.add_argument("--pipeline", type=int, default=32, help="commands per round trip")
    ap.add_argument("--set-ratio", type=float, default=0.2)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds per timeline line")
    ap.add_argument("--stop-file")
    ap.add_argument("--duration", type=float, default=0, help="stop after N s (0: stop file / SIGTERM)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    addrs = [parse(a.source), parse(a.target)]
    names = ["a", "b"]
    rnd = random.Random(a.seed)
    value = bytes(ord("A") + (i * 7) % 26 for i in range(a.value_size))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lock = threading.Lock()
    st = {"ops": 0, "where": 0, "gets": 0, "sets": 0, "get_misses": 0, "bad_values": 0,
          "errors_source": 0, "errors_target": 0, "reconnects": 0, "gap": 0.0, "gap_at": None,
          "switch": None, "first_error": None}
    out_lock = threading.Lock()

    def emit(obj):
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def reporter():
        # Lines fall on a global grid (multiples of --interval): several clients' lines add up.
        last, nxt = 0, (int(time.time() / a.interval) + 1) * a.interval
        while not stop.is_set():
            time.sleep(max(0.0, nxt - time.time()))
            with lock:
                ops, where = st["ops"], st["where"]
            emit({"t": round(nxt, 3), "ops": ops - last, "host": names[where]})
            last = ops
            nxt += a.interval
    rep = threading.Thread(target=reporter, daemon=True)
    t_start = time.time()
    rep.start()

    def key():
        j = rnd.randrange(a.keys)
        first = j - j % a.chunk
        return f"k{first}:{j - first}"

    conn, last_ok = None, time.time()
    while not stop.is_set():
        if a.duration and time.time() - t_start >= a.duration:
            break
        where = st["where"]
        cmds, kinds = [], []
        for _ in range(a.pipeline):
            if rnd.random() < a.set_ratio:
                cmds.append(bulk("SET", key(), value))
                kinds.append("S")
            else:
                cmds.append(bulk("GET", key()))
                kinds.append("G")
        try:
            if conn is None:
                conn = Conn(addrs[where], timeout=10)
            replies = conn.pipeline(b"".join(cmds), len(cmds), stop)
            why = None
        except OSError as e:
            if stop.is_set():
                break
            replies, why = [], f"{type(e).__name__}: {e}"
            if conn is not None:
                conn.close()
            conn = None
        ok = 0
        errs = []
        for k, (t, v) in zip(kinds, replies):
            if t == "-":
                errs.append(v)
                continue
            ok += 1
            if k == "G":
                st["gets"] += 1
                if v is None:
                    st["get_misses"] += 1
                elif len(v) != a.value_size:
                    st["bad_values"] += 1
            else:
                st["sets"] += 1
                if v != "OK":
                    st["bad_values"] += 1
        now = time.time()
        if ok:
            with lock:
                st["ops"] += ok
                if now - last_ok > st["gap"]:
                    st["gap"], st["gap_at"] = now - last_ok, last_ok
            last_ok = now
        if errs:
            st["errors_target" if where else "errors_source"] += len(errs)
            if st["first_error"] is None:
                st["first_error"] = {"host": names[where], "t": now, "error": errs[0][:200]}
            why = why or f"error reply: {errs[0][:200]}"
        if why is None:
            continue
        if where == 0:
            # The source refused or closed: the service is on the target now.
            if conn is not None:
                conn.close()
            conn = None
            with lock:
                st["where"] = 1
            st["switch"] = {"t": now, "reason": why}
            emit({"t": round(now, 3), "event": "switch", "from": "a", "to": "b", "reason": why})
        else:
            if conn is not None and not errs:
                conn.close()
                conn = None
            st["reconnects"] += 1
            time.sleep(0.01)
    stop.set()
    rep.join(timeout=1)
    if conn is not None:
        conn.close()
    emit({"summary": {"ops": st["ops"], "gets": st["gets"], "sets": st["sets"],
                      "get_misses": st["get_misses"], "bad_values": st["bad_values"],
                      "errors_source": st["errors_source"], "errors_target": st["errors_target"],
                      "first_error": st["first_error"], "reconnects_target": st["reconnects"],
                      "client-gap-ms": round(st["gap"] * 1000, 1), "client-gap-start": st["gap_at"],
                      "switch": st["switch"], "pipeline": a.pipeline, "set_ratio": a.set_ratio,
                      "value_size": a.value_size, "seconds": round(time.time() - t_start, 3)}})


if __name__ == "__main__":
    main()
