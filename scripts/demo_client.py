#!/usr/bin/python3
"""Demo client: writes to kvstore on the source host until told to stop, follows the service to
the target host when the source stops answering, then checks that every acknowledged write is
on the target. Prints the longest wait any write saw (client-gap).

Usage: demo_client.py --source HOST:PORT --target HOST:PORT --stop-file PATH [--threads 4]
Run it inside the client's network namespace (scripts/netns-exec.sh a ...).
"""
import argparse
import json
import os
import socket
import threading
import time


def parse(hp):
    h, p = hp.rsplit(":", 1)
    return h, int(p)


class Conn:
    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=30)
        self.buf = b""

    def cmd(self, *args):
        req = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
        self.s.sendall(req.encode())
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise OSError("closed")
            self.buf += chunk
        line, _, rest = self.buf.partition(b"\r\n")
        if line.startswith(b"$") and line != b"$-1":
            n = int(line[1:])
            while len(rest) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise OSError("closed")
                rest += chunk
            self.buf = rest[n + 2:]
            return rest[:n].decode()
        self.buf = rest
        return line.decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    addrs = [parse(a.source), parse(a.target)]
    acked, lock = {}, threading.Lock()
    gap = [0.0]
    switched = [0]

    def writer(w):
        n, where, conn = 0, 0, None
        last_ack = time.time()
        while not os.path.exists(a.stop_file):
            key = f"client{w}:{n % 1000}"
            try:
                if conn is None:
                    conn = Conn(addrs[where])
                r = conn.cmd("SET", key, n)
            except OSError:
                conn, r = None, None
            if r == "+OK" or r == "OK":
                now = time.time()
                with lock:
                    acked[key] = n
                    gap[0] = max(gap[0], now - last_ack)
                last_ack = now
                n += 1
            elif where == 0:
                where, conn = 1, None  # the source refused or closed: follow the service
                with lock:
                    switched[0] += 1
            else:
                time.sleep(0.01)
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    c = Conn(addrs[1])
    lost = [k for k, n in acked.items() if not (c.cmd("GET", k).isdigit() and int(c.cmd("GET", k)) >= n)]
    print(json.dumps({"acknowledged_keys": len(acked), "writes_lost": len(lost), "client-gap-ms": round(gap[0] * 1000, 1),
                      "writers_followed_to_target": switched[0]}))


if __name__ == "__main__":
    main()
