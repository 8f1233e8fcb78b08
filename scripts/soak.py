#!/usr/bin/env python3
"""Soak test: kvstore migrates back and forth between two hosts while clients write.

  scripts/soak.py [--round-trips 100] [--modes fault] [--heap 256M] [--data-keys 20000]
                  [--writers 4] [--bin build/bin] [--out summary.json] [--loopback]

Host A runs `constmig run --app kvstore`; the script starts `constmig receive` on the other host
and migrates there, then back, --round-trips times (2 migrations per round trip). The hosts are
the two network namespaces of scripts/netns-hosts.sh (joined by veth; needs root) or, where they
cannot be made (or with --loopback), two processes on 127.0.0.1, said so.

Meanwhile a client process (inside host A's namespace) keeps --writers connections writing
SET w<W>:k<K> "<n>-..." with n increasing per writer; each writer follows the service: when its
host refuses (frozen, migrated away) or closes, it goes to the other host, as
bench/kv_load_client.py and scripts/demo_client.py do. It records every acknowledged SET (the
last acknowledged n per key) and the highest n it ever sent per key. At the end it reads every
key on the final host: an acknowledged write is LOST if the key is missing or holds a value
older than its last acknowledged one (a newer, unacknowledged value is fine: its reply was cut
off, not its write). The bulk keys made by DEBUG POPULATE before the first migration must all
still be there (DBSIZE).

--modes takes one mode or a comma list that the migrations cycle through (e.g.
fault,stop-and-copy,access): stop-and-copy, fault, uffd, access (the last three: live ConstMig
with that tracker). Default: fault.

Prints one progress line per round trip, a summary JSON (also to --out), and exits 0 only if
every migration committed and no acknowledged write was lost. On a failure it stops at once,
prints the failing command's output and the tail of every process log, and keeps the work
folder (its path is printed).
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MODE_ARGS = {
    "stop-and-copy": ["--mode", "stop-and-copy"],
    "fault": ["--mode", "constmig", "--tracker", "fault"],
    "uffd": ["--mode", "constmig", "--tracker", "uffd"],
    "access": ["--mode", "constmig", "--tracker", "access"],
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- client (runs as its own process, inside host A's namespace) --------------------------------

def parse_addr(hp):
    h, p = hp.rsplit(":", 1)
    return h, int(p)


class Resp:
    """One RESP connection: a command, one reply."""

    def __init__(self, addr, timeout):
        self.s = socket.create_connection(addr, timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        line = self._line()
        if line.startswith(b"$"):
            n = int(line[1:])
            if n < 0:
                return ("$", None)
            while len(self.buf) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise OSError("connection closed")
                self.buf += chunk
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return ("$", v.decode(errors="replace"))
        if line.startswith(b":"):
            return (":", int(line[1:]))
        return (line[:1].decode(), line[1:].decode(errors="replace"))


def client_main(a):
    hosts = [parse_addr(h) for h in a.hosts.split(",")]
    # Bulk data first, on host A (the service starts there).
    c = Resp(hosts[0], 30)
    for first in range(0, a.data_keys, 10000):
        n = min(10000, a.data_keys - first)
        r = c.cmd("DEBUG", "POPULATE", n, f"bulk{first}", a.data_size)
        if r != ("+", "OK"):
            print(json.dumps({"error": f"DEBUG POPULATE failed: {r}"}), flush=True)
            return 1
    c.close()
    open(a.ready_file, "w").close()
    pad = "x" * a.value_size
    lock = threading.Lock()
    acked = {}      # key -> last acknowledged n
    sent = {}       # key -> highest n sent
    stats = {"acks": 0, "errors": 0, "switches": 0, "gap": 0.0, "gap_at": None}

    def writer(w):
        rnd = random.Random(w)
        where, conn, n = 0, None, 0
        last_ack = time.time()
        while not os.path.exists(a.stop_file):
            key = f"w{w}:k{rnd.randrange(a.keys_per_writer)}"
            with lock:
                sent[key] = n
            try:
                if conn is None:
                    conn = Resp(hosts[where], a.timeout)
                r = conn.cmd("SET", key, f"{n}-{pad}")
            except (OSError, ValueError) as e:
                r = ("!", str(e))
            if r == ("+", "OK"):
                now = time.time()
                with lock:
                    acked[key] = n
                    stats["acks"] += 1
                    if now - last_ack > stats["gap"]:
                        stats["gap"], stats["gap_at"] = now - last_ack, last_ack
                last_ack = now
            else:
                # Refused (frozen, migrated away) or closed: the service is on the other host.
                with lock:
                    stats["errors"] += 1
                    stats["switches"] += 1
                if conn is not None:
                    conn.close()
                conn, where = None, 1 - where
                time.sleep(0.005)
            n += 1
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(a.writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    final = open(a.stop_file).read().strip()
    c = Resp(parse_addr(final), 30)
    if a.self_test_lose_write and acked:
        # Self-test of the check below: one acknowledged write disappears on the final host.
        victim = sorted(acked)[0]
        c.cmd("DEL", victim)
    lost = []
    for key, n in sorted(acked.items()):
        r = c.cmd("GET", key)
        v = r[1] if r[0] == "$" else None
        got = None
        if v is not None and "-" in v:
            try:
                got = int(v.split("-", 1)[0])
            except ValueError:
                got = None
        if got is None or got < n or got > sent.get(key, n):
            lost.append({"key": key, "last_acked": n, "final": v[:40] if v else v})
    dbsize = c.cmd("DBSIZE")
    c.close()
    want_keys = a.data_keys + len(sent)
    print(json.dumps({
        "acknowledged_writes": stats["acks"], "acknowledged_keys": len(acked),
        "lost": len(lost), "lost_examples": lost[:10], "refusals_followed": stats["switches"],
        "client_gap_ms": round(stats["gap"] * 1000, 1), "dbsize": dbsize[1] if dbsize[0] == ":" else None,
        "dbsize_expected_min": a.data_keys + len(acked), "dbsize_expected_max": want_keys,
        "final_host": final}), flush=True)
    return 0


# ---- orchestrator ------------------------------------------------------------------------------

class Soak:
    def __init__(self, a):
        self.a = a
        self.bin = os.path.abspath(a.bin)
        self.work = tempfile.mkdtemp(prefix="constmig-soak-")
        self.procs = []
        self.netns = None
        self.seq = 0

    def log(self, msg):
        print(msg, flush=True)

    # Hosts: name -> (address, kv port, migration port, command prefix).
    def setup_hosts(self):
        if not self.a.loopback:
            prefix = self.a.netns_prefix or f"cms{os.getpid() % 100000}"
            r = subprocess.run([os.path.join(ROOT, "scripts", "netns-hosts.sh"), "up", "--prefix",
                                prefix], capture_output=True, text=True)
            if r.returncode == 0:
                self.netns = prefix
                self.hosts = {"a": ("10.77.0.1", 6390, 7000, ["ip", "netns", "exec", f"{prefix}-a"]),
                              "b": ("10.77.0.2", 6390, 7000, ["ip", "netns", "exec", f"{prefix}-b"])}
                self.log(f"== two hosts: network namespaces {prefix}-a (10.77.0.1) and "
                         f"{prefix}-b (10.77.0.2) joined by veth")
            else:
                self.log("== two hosts: LOOPBACK fallback (" +
                         (r.stderr.strip().splitlines() or ["netns-hosts.sh failed"])[0][:160] + ")")
        if not self.netns:
            ports = [free_port() for _ in range(4)]
            self.hosts = {"a": ("127.0.0.1", ports[0], ports[1], []),
                          "b": ("127.0.0.1", ports[2], ports[3], [])}
        keys = {}
        for h in ("a", "b"):
            os.makedirs(os.path.join(self.work, h, "trust"), exist_ok=True)
            keys[h] = subprocess.run([os.path.join(self.bin, "constmig"), "--state-dir",
                                      os.path.join(self.work, h), "platform", "--export-key"],
                                     check=True, capture_output=True, text=True).stdout
        for h in ("a", "b"):
            for k, pem in keys.items():
                with open(os.path.join(self.work, h, "trust", f"{k}.pem"), "w") as f:
                    f.write(pem)

    def spawn(self, host, args, name):
        path = os.path.join(self.work, name)
        f = open(path, "w")
        p = subprocess.Popen(self.hosts[host][3] + args, stdout=f, stderr=subprocess.STDOUT)
        p.logname = path
        p.host = host
        self.procs.append(p)
        return p

    def constmig(self, host, args, name):
        return self.spawn(host, [os.path.join(self.bin, "constmig"), "--state-dir",
                                 os.path.join(self.work, host)] + args, name)

    def wait_for(self, pred, timeout, what):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if pred():
                return
            time.sleep(0.05)
        raise SoakError(f"timed out after {timeout} s waiting for {what}")

    def start_service(self, host, receive):
        addr, kvport, migport, _ = self.hosts[host]
        self.seq += 1
        ctl = os.path.join(self.work, f"{host}-{self.seq}.ctl")
        common = ["--app", "kvstore", "--bind", addr, "--port", str(kvport), "--max-memory",
                  self.a.heap, "--control", ctl, "--stats-interval", "0"]
        if receive:
            p = self.constmig(host, ["receive", "--listen", f"{addr}:{migport}",
                                     "--accept-timeout", "120"] + common,
                              f"{self.seq:04d}-{host}-receive.log")
            self.wait_for(lambda: "waiting for an incoming" in read(p.logname) or p.poll() is not None,
                          60, f"constmig receive on host {host}")
            if p.poll() is not None:
                raise SoakError(f"constmig receive on host {host} exited with {p.returncode}",
                                [p])
        else:
            p = self.constmig(host, ["run"] + common, f"{self.seq:04d}-{host}-run.log")
            self.wait_for(lambda: os.path.exists(ctl) or p.poll() is not None, 60,
                          f"constmig run on host {host}")
            if p.poll() is not None:
                raise SoakError(f"constmig run on host {host} exited with {p.returncode}", [p])
        p.ctl = ctl
        return p

    def start_proxy(self, src_host, dst_host):
        """--proxy-rule: a constmig-proxy on the source's host, forwarding to the target."""
        saddr = self.hosts[src_host][0]
        daddr, _, migport, _ = self.hosts[dst_host]
        port = 7100 if self.netns else free_port()
        args = [os.path.join(self.bin, "constmig-proxy"), "--listen", f"{saddr}:{port}", "--to",
                f"{daddr}:{migport}"]
        for r in self.a.proxy_rule:
            args += ["--rule", r]
        p = self.spawn(src_host, args, f"{self.seq:04d}-{src_host}-proxy.log")
        p.ctl = None
        self.wait_for(lambda: "listening on" in read(p.logname) or p.poll() is not None, 30,
                      "constmig-proxy")
        if p.poll() is not None:
            raise SoakError(f"constmig-proxy exited with {p.returncode}", [p])
        return p, f"{saddr}:{port}"

    def migrate(self, src, dst_host, mode, to=None):
        addr, _, migport, _ = self.hosts[dst_host]
        cmd = [os.path.join(self.bin, "constmig"), "migrate", "--control", src.ctl, "--to",
               to or f"{addr}:{migport}"] + MODE_ARGS[mode]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.a.migrate_timeout)
        wall = (time.time() - t0) * 1000
        try:
            stats = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            stats = {}
        return r, stats, wall

    def run(self):
        a = self.a
        modes = a.modes.split(",")
        for m in modes:
            if m not in MODE_ARGS:
                raise SoakError(f"--modes: unknown mode '{m}' (known: {', '.join(MODE_ARGS)})")
        self.setup_hosts()
        t_start = time.time()
        cur_host = "a"
        cur = self.start_service("a", receive=False)
        kv = {h: f"{v[0]}:{v[1]}" for h, v in self.hosts.items()}
        ready, stop = os.path.join(self.work, "client.ready"), os.path.join(self.work, "client.stop")
        client = self.spawn("a", [sys.executable, os.path.abspath(__file__), "client",
                                  "--hosts", f"{kv['a']},{kv['b']}", "--ready-file", ready,
                                  "--stop-file", stop, "--writers", str(a.writers),
                                  "--data-keys", str(a.data_keys), "--data-size", str(a.data_size),
                                  "--value-size", str(a.value_size)] +
                            (["--self-test-lose-write"] if a.self_test_lose_write else []),
                            "client.log")
        client.ctl = None
        self.wait_for(lambda: os.path.exists(ready) or client.poll() is not None, 300,
                      "the client's bulk data (DEBUG POPULATE)")
        if client.poll() is not None:
            raise SoakError("the client failed before the first migration", [client, cur])
        heap = json.loads(subprocess.run([os.path.join(self.bin, "constmig"), "status", "--control",
                                          cur.ctl], capture_output=True, text=True).stdout)
        in_use = heap.get("heap", {}).get("in_use", 0)
        self.log(f"== kvstore on host a: {a.data_keys} bulk keys, heap in use "
                 f"{in_use / 2**20:.1f} MiB; {a.writers} writers; {a.round_trips} round trips, "
                 f"modes {','.join(modes)}")
        time.sleep(0.3)
        migrations = []
        self.summary = {"ok": False, "round_trips_planned": a.round_trips, "modes": modes,
                        "hosts": "netns" if self.netns else "loopback", "heap_limit": a.heap,
                        "heap_in_use_bytes": in_use, "bulk_keys": a.data_keys,
                        "writers": a.writers, "migrations": migrations}
        for i in range(2 * a.round_trips):
            mode = modes[i % len(modes)]
            dst_host = "b" if cur_host == "a" else "a"
            dst = self.start_service(dst_host, receive=True)
            proxy, via = (None, None)
            if a.proxy_rule:
                proxy, via = self.start_proxy(cur_host, dst_host)
            r, stats, wall = self.migrate(cur, dst_host, mode, via)
            rec = {"n": i + 1, "from": cur_host, "to": dst_host, "mode": mode,
                   "status": stats.get("status", "?"), "rc": r.returncode,
                   "wall_ms": round(wall, 1), "total_ms": stats.get("total-time"),
                   "downtime_ms": stats.get("downtime"), "recoveries": stats.get("recoveries")}
            if proxy is not None:
                proxy.send_signal(signal.SIGINT)
                try:
                    proxy.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proxy.kill()
                rec["proxy_rules_applied"] = sum(
                    1 for line in read(proxy.logname).splitlines()
                    if line.startswith("constmig-proxy: rule ") and ") on conn " in line)
            migrations.append(rec)
            if r.returncode != 0 or stats.get("status") != "completed":
                raise SoakError(f"migration {i + 1} ({cur_host} -> {dst_host}, {mode}) did not "
                                f"complete (rc {r.returncode}, status {stats.get('status')}):\n"
                                f"{r.stderr.strip()[-1500:]}", [cur, dst, client])
            try:
                cur.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise SoakError(f"the source on host {cur_host} did not exit after the commit",
                                [cur, dst])
            cur, cur_host = dst, dst_host
            if i % 2 == 1:
                rt = migrations[-2:]
                self.log(f"round trip {(i + 1) // 2}/{a.round_trips}: " + ", ".join(
                    f"{m['from']}->{m['to']} {m['mode']} {m['wall_ms']:.0f} ms "
                    f"(downtime {m['downtime_ms'] or 0:.1f} ms" +
                    (f", {m['recoveries']} recoveries" if m.get("recoveries") else "") + ")"
                    for m in rt) +
                    f"  [{time.time() - t_start:.0f} s]")
        # Stop the writers and check every acknowledged write on the final host.
        with open(stop + ".tmp", "w") as f:
            f.write(kv[cur_host])
        os.rename(stop + ".tmp", stop)
        try:
            client.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise SoakError("the client did not finish its final check", [client])
        out = read(client.logname).strip().splitlines()
        try:
            res = json.loads(out[-1])
        except (ValueError, IndexError):
            raise SoakError("the client printed no result", [client])
        if "error" in res:
            raise SoakError(f"client: {res['error']}", [client])
        downs = [m["downtime_ms"] for m in migrations if m["downtime_ms"] is not None]
        walls = [m["wall_ms"] for m in migrations]
        dbsize_ok = res["dbsize"] is not None and \
            res["dbsize_expected_min"] <= res["dbsize"] <= res["dbsize_expected_max"]
        self.summary.update({
            "round_trips": a.round_trips, "migrations_completed": len(migrations),
            "elapsed_s": round(time.time() - t_start, 1), "client": res,
            "acknowledged_writes": res["acknowledged_writes"], "writes_lost": res["lost"],
            "dbsize_ok": dbsize_ok,
            "downtime_ms": pct_summary(downs), "migrate_wall_ms": pct_summary(walls),
        })
        self.summary["ok"] = res["lost"] == 0 and dbsize_ok and res["acknowledged_writes"] > 0
        if res["lost"]:
            raise SoakError(f"{res['lost']} acknowledged write(s) lost on the final host "
                            f"{cur_host}: {res['lost_examples'][:3]}", [cur, client])
        if not dbsize_ok:
            raise SoakError(f"DBSIZE {res['dbsize']} on the final host, expected "
                            f"{res['dbsize_expected_min']}..{res['dbsize_expected_max']} "
                            f"(bulk keys + written keys)", [cur, client])
        if res["acknowledged_writes"] == 0:
            raise SoakError("the client never got a write acknowledged", [client])

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.netns:
            subprocess.run([os.path.join(ROOT, "scripts", "netns-hosts.sh"), "down", "--prefix",
                            self.netns], capture_output=True)


class SoakError(Exception):
    def __init__(self, msg, procs=()):
        super().__init__(msg)
        self.procs = list(procs)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct_summary(v):
    if not v:
        return None
    s = sorted(v)
    return {"n": len(s), "p50": round(statistics.median(s), 1),
            "p99": round(s[min(len(s) - 1, int(0.99 * len(s)))], 1), "max": round(s[-1], 1)}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        ap = argparse.ArgumentParser(prog="soak.py client")
        ap.add_argument("client")
        ap.add_argument("--hosts", required=True)
        ap.add_argument("--ready-file", required=True)
        ap.add_argument("--stop-file", required=True)
        ap.add_argument("--writers", type=int, default=4)
        ap.add_argument("--keys-per-writer", type=int, default=200)
        ap.add_argument("--data-keys", type=int, default=20000)
        ap.add_argument("--data-size", type=int, default=1000)
        ap.add_argument("--value-size", type=int, default=100)
        ap.add_argument("--timeout", type=float, default=60)
        ap.add_argument("--self-test-lose-write", action="store_true")
        return client_main(ap.parse_args())
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--round-trips", type=int, default=100, help="A->B->A round trips (default 100)")
    ap.add_argument("--modes", default="fault",
                    help="mode, or comma list the migrations cycle through: stop-and-copy, fault, "
                         "uffd, access (default fault)")
    ap.add_argument("--heap", default="256M", help="enclave heap limit (--max-memory)")
    ap.add_argument("--data-keys", type=int, default=20000, help="bulk keys (DEBUG POPULATE)")
    ap.add_argument("--data-size", type=int, default=1000, help="bytes per bulk value")
    ap.add_argument("--value-size", type=int, default=100, help="padding of each written value")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--out", help="write the summary JSON here too")
    ap.add_argument("--loopback", action="store_true", help="do not try network namespaces")
    ap.add_argument("--netns-prefix", help="namespace prefix (default cms<pid>)")
    ap.add_argument("--migrate-timeout", type=float, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the work folder after success")
    ap.add_argument("--proxy-rule", action="append", default=[],
                    help="run every migration through constmig-proxy with this rule "
                         "(repeatable; docs/proxy.md), e.g. 'action=cut:pct=50' to exercise "
                         "live-mode recovery on every migration")
    ap.add_argument("--self-test-lose-write", action="store_true",
                    help="TESTING the soak itself: delete one acknowledged key on the final host "
                         "before the check; exits 0 only if the check reports exactly that loss")
    a = ap.parse_args()
    if a.round_trips < 1:
        ap.error("--round-trips must be at least 1")
    if not os.access(os.path.join(a.bin, "constmig"), os.X_OK):
        print(f"soak: {a.bin}/constmig not found: build first or pass --bin", file=sys.stderr)
        return 2
    s = Soak(a)
    s.summary = {"ok": False}
    rc = 0
    try:
        s.run()
    except (SoakError, subprocess.TimeoutExpired) as e:
        rc = 1
        s.summary["ok"] = False
        s.summary["error"] = str(e)
        print(f"\nSOAK FAILED: {e}", flush=True)
        for p in getattr(e, "procs", []):
            print(f"---- {p.logname} (exit {p.poll()}), last lines:")
            print("\n".join(read(p.logname).splitlines()[-40:]))
        print(f"(all logs kept in {s.work})")
    except KeyboardInterrupt:
        rc = 130
        s.summary["error"] = "interrupted"
    finally:
        s.stop_all()
    if a.self_test_lose_write:
        lost = s.summary.get("writes_lost")
        detected = rc == 1 and lost == 1
        print(f"self-test: one acknowledged write was deleted; the check reported {lost} lost: "
              f"{'DETECTED' if detected else 'NOT DETECTED'}")
        s.summary["self_test_detected"] = detected
        rc = 0 if detected else 1
    summary = json.dumps(s.summary, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(summary + "\n")
    brief = {k: v for k, v in s.summary.items() if k != "migrations"}
    print("== summary " + json.dumps(brief, indent=2))
    if rc == 0 and not a.keep and ("error" not in s.summary or a.self_test_lose_write):
        shutil.rmtree(s.work, ignore_errors=True)
    elif rc == 0:
        print(f"(logs in {s.work})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
