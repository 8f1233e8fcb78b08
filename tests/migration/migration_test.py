#!/usr/bin/env python3
"""Migration test matrix: drives real constmig processes (run / receive / migrate / status).

Usage: migration_test.py --bin BUILD/bin [--mode stop-and-copy|fault|uffd|access] CASE
Each case prints what it checks and exits 0 (pass), 1 (fail) or 77 (skip). Every case runs under
each migration mode: stop-and-copy, and live (ConstMig) with the fault (mprotect), the uffd or
the access (compiled-in checks) tracker; ctest names them migration.<mode>.<case>.
Hosts are two processes on 127.0.0.1 with SEPARATE platform keys (CONSTMIG_HOME), each
trusting the other, like two machines.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = None
TMP = None
PROCS = []
MODE = "fault"
MODE_ARGS = {
    "stop-and-copy": ["--mode", "stop-and-copy"],
    "fault": ["--mode", "constmig", "--tracker", "fault"],
    "uffd": ["--mode", "constmig", "--tracker", "uffd"],
    "access": ["--mode", "constmig", "--tracker", "access"],
}


def live():
    return MODE != "stop-and-copy"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)
    print(f"  ok: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def home(name):
    return os.path.join(TMP, name)


def setup_hosts(trust_each_other=True, names=("a", "b")):
    """Platform homes (source 'a', target 'b', ...) with their own keys."""
    keys = {}
    for h in names:
        os.makedirs(home(h), exist_ok=True)
        out = subprocess.run([os.path.join(BIN, "constmig"), "--state-dir", home(h), "platform", "--export-key"],
                             check=True, capture_output=True, text=True).stdout
        keys[h] = out
    for h in names:
        os.makedirs(os.path.join(home(h), "trust"), exist_ok=True)
        with open(os.path.join(home(h), "trust", "self.pem"), "w") as f:
            f.write(keys[h])
        if trust_each_other:
            for other in names:
                if other != h:
                    with open(os.path.join(home(h), "trust", f"peer-{other}.pem"), "w") as f:
                        f.write(keys[other])


NETNS_PREFIX = None  # set by case_stop_and_copy_netns: run hosts in namespaces


def spawn(host, args, log):
    f = open(os.path.join(TMP, log), "w")
    wrap = ["ip", "netns", "exec", f"{NETNS_PREFIX}-{host}"] if NETNS_PREFIX else []
    p = subprocess.Popen(wrap + [os.path.join(BIN, "constmig"), "--state-dir", home(host)] + args,
                         stdout=f, stderr=subprocess.STDOUT)
    p.logname = os.path.join(TMP, log)
    PROCS.append(p)
    return p


def stop_all():
    """Ctrl-C every process this case started; kill what does not exit within 10 s."""
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def log_of(p):
    with open(p.logname, errors="replace") as f:  # a log may hold bytes a peer sent
        return f.read()


def wait_for(pred, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise Fail(f"timed out waiting for {what}")


def ctl(host, app="x"):
    return os.path.join(TMP, f"{host}-{app}.ctl")


def status(path):
    r = subprocess.run([os.path.join(BIN, "constmig"), "status", "--control", path],
                       capture_output=True, text=True, timeout=30)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def start_source(app, extra):
    c = ctl("a", app)
    p = spawn("a", ["run", "--app", app, "--control", c, "--stats-interval", "0"] + extra, "source.log")
    wait_for(lambda: os.path.exists(c) and status(c) is not None, 30, "source control socket")
    return p, c


def start_target(app, extra, listen_port, image=None):
    c = ctl("b", app)
    args = ["receive", "--app", app, "--listen", f"127.0.0.1:{listen_port}", "--control", c,
            "--stats-interval", "0", "--accept-timeout", "60"] + extra
    if image:
        args += ["--image", image]
    p = spawn("b", args, "target.log")
    wait_for(lambda: "waiting for an incoming migration" in log_of(p) or p.poll() is not None, 30,
             "target to listen")
    return p, c


def migrate_cmd(src_ctl, to, *extra):
    return [os.path.join(BIN, "constmig"), "migrate", "--control", src_ctl, "--to", to] + \
        MODE_ARGS[MODE] + list(extra)


def migrate(src_ctl, port, *extra):
    r = subprocess.run(migrate_cmd(src_ctl, f"127.0.0.1:{port}", *extra), capture_output=True,
                       text=True, timeout=120)
    stats = None
    try:
        stats = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        pass
    return r.returncode, stats, r.stderr


def pagecounter_ok(c, min_checks=1):
    s = status(c)
    if not s:
        return False, "no status"
    a = s.get("app_stats", {})
    return a.get("last_error", "") == "" and a.get("checks_passed", 0) >= min_checks, a


# ---- cases -----------------------------------------------------------------------------------

def case_pagecounter():
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "48", "--max-memory", "256M", "--io-threads", "4"])
    wait_for(lambda: pagecounter_ok(sc)[0], 30, "source oracle check")
    tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--io-threads", "4"], port)
    rc, stats, err = migrate(sc, port, "--capture", os.path.join(TMP, "s.cap"))
    check(rc == 0, f"migrate succeeded (rc={rc}) {err[-300:]}")
    check(stats["status"] == "completed", "status completed")
    pages = stats["heap-bytes"] // 4096
    check(stats["pages-pushed"] + stats.get("postcopy-pages", 0) == pages,
          f"every heap page sent once: {stats['pages-pushed']} streamed + "
          f"{stats.get('postcopy-pages', 0)} on demand = {pages}")
    check(stats.get("downtime", 0) > 0, f"downtime measured: {stats.get('downtime')} ms")
    t = stats.get("target", {})
    check(t.get("mode") == ("stop-and-copy" if not live() else "constmig"), f"target ran {t.get('mode')}")
    if live():
        check(t.get("tracker") == MODE, f"target tracked pages with {t.get('tracker')}")
        check(t.get("pages-installed") == pages, "the target installed every page")
        check(len(t.get("population-timeline", [])) >= 1, "population timeline recorded")
        check(t.get("postcopy-requests") == stats.get("postcopy-requests"),
              f"{stats.get('postcopy-requests')} page requests sent and answered")
        print(f"  info: downtime {stats['downtime']:.1f} ms, {t.get('faults')} faults, "
              f"{t.get('postcopy-requests')} requests, p50 {t.get('fault-latency-p50-us')} us")
    wait_for(lambda: src.poll() is not None, 20, "source to exit after commit")
    before = status(tc)["app_stats"]
    wait_for(lambda: pagecounter_ok(tc, before["checks_passed"] + 2)[0], 30,
             "two more oracle checks on the target")
    a = status(tc)["app_stats"]
    check(a["last_error"] == "", "no oracle error on the target")
    check(a["rounds"] > before["rounds"], "target keeps stepping every page")


def kv_cmd(port, *args, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    req = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
    s.sendall(req.encode())
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2 and not data.startswith(b"$-1")):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors="replace")


def case_kvstore_writers():
    setup_hosts()
    port, sport, tport = free_port(), free_port(), free_port()
    src, sc = start_source("kvstore", ["--port", str(sport), "--max-memory", "256M"])
    # Bulk data first (so there is a heap to move), then writers during the migration.
    for i in range(2000):
        kv_cmd(sport, "SET", f"bulk:{i}", "v" * 200 + str(i))
    tgt, tc = start_target("kvstore", ["--port", str(tport), "--max-memory", "256M"], port)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w):
        n = 0
        ports = [sport, tport]
        conn_port = 0
        while not stop.is_set():
            key = f"w{w}:k{n % 50}"
            try:
                r = kv_cmd(ports[conn_port], "SET", key, str(n), timeout=10)
            except OSError:
                conn_port = 1  # source gone: reconnect to the target
                continue
            if r == "+OK\r\n":
                with lock:
                    acked[key] = n
                n += 1
            else:
                conn_port = 1  # refused (migrated away): go to the target
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rc, stats, err = migrate(sc, port)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    check(rc == 0, f"migrate with 8 writers in flight succeeded (rc={rc}) {err[-300:]}")
    check(len(acked) > 0, f"{len(acked)} keys acknowledged")
    lost = []
    for key, n in acked.items():
        r = kv_cmd(tport, "GET", key)
        val = r.split("\r\n")[1] if r.startswith("$") and not r.startswith("$-1") else None
        if val is None or int(val) < n:
            lost.append((key, n, r))
    check(not lost, f"no acknowledged write lost on the target ({len(lost)} lost: {lost[:3]})")
    for i in (0, 999, 1999):
        check(kv_cmd(tport, "GET", f"bulk:{i}") == f"${201 + len(str(i)) - 1}\r\n{'v' * 200}{i}\r\n",
              f"bulk:{i} intact")


def case_inspect_capture_has_no_plaintext():
    setup_hosts()
    port, sport, tport = free_port(), free_port(), free_port()
    secret = "TOPSECRET-" + "Q" * 40
    src, sc = start_source("kvstore", ["--port", str(sport), "--max-memory", "64M"])
    check(kv_cmd(sport, "SET", "k", secret) == "+OK\r\n", "secret stored")
    check(kv_cmd(sport, "DEBUG", "POPULATE", "5000", "bulk", "300") == "+OK\r\n", "5000 more keys")
    before = status(sc)["app_stats"]
    tgt, tc = start_target("kvstore", ["--port", str(tport), "--max-memory", "64M"], port)
    cap = os.path.join(TMP, "s.cap")
    rc, stats, err = migrate(sc, port, "--capture", cap)
    check(rc == 0, "migrate succeeded")
    data = open(cap, "rb").read()
    check(secret.encode() not in data, f"the {len(data)}-byte stream does not contain the secret")
    r = subprocess.run([os.path.join(BIN, "constmig"), "inspect", cap], capture_output=True, text=True)
    check(r.returncode == 0, "inspect decodes the whole capture")
    check("PAGES" in r.stdout and secret not in r.stdout, "inspect lists PAGES frames, never plaintext")
    if live():
        # Live mode's urgent connection (page requests/answers) is captured beside the stream.
        ucap = cap + ".urgent"
        check(os.path.exists(ucap), "the urgent connection was used and captured")
        udata = open(ucap, "rb").read()
        check(secret.encode() not in udata, f"the {len(udata)}-byte urgent capture has no secret")
        r = subprocess.run([os.path.join(BIN, "constmig"), "inspect", ucap], capture_output=True, text=True)
        check(r.returncode == 0 and "STATS" in r.stdout, "inspect decodes the urgent capture")
    check(kv_cmd(tport, "GET", "k") == f"${len(secret)}\r\n{secret}\r\n", "secret arrived on the target")
    after = status(tc)["app_stats"]
    check(after["keys"] == before["keys"] and after["digest"] == before["digest"],
          f"store byte for byte equal: {after['keys']} keys, digest {after['digest']:#x}")


FAULT_EXPECT = {
    "corrupt-ciphertext": "failed authentication",
    "corrupt-tag": "failed authentication",
    "duplicate-page": "arrived twice",
    "replay-frame": "",
    "reorder-frames": "",
    "drop-page": "never arrived",
    "truncate": "",
    "forge-manifest": "MANIFEST record failed authentication",
    "oversize-length": "",
    "earlier-migration": "failed authentication",
    "corrupt-urgent": "failed authentication",
}


LIVE_ONLY_FAULTS = {"corrupt-urgent"}


def run_fault(fault):
    if fault in LIVE_ONLY_FAULTS and not live():
        print(f"SKIP: {fault} needs a live migration")
        raise SystemExit(77)
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "16", "--max-memory", "128M", "--io-threads", "2"])
    extra = []
    if fault == "earlier-migration":
        # Record a complete earlier migration of another instance to replay from.
        p1 = free_port()
        s0, c0 = start_source_named("pagecounter", "pre")
        t0, _ = start_target_named("pagecounter", "pre", p1)
        cap = os.path.join(TMP, "earlier.cap")
        rc, _, _ = migrate(c0, p1, "--capture", cap)
        check(rc == 0, "earlier migration recorded")
        extra = ["--replay-capture", cap]
    tgt, tc = start_target("pagecounter", ["--max-memory", "128M"], port)
    rc, stats, err = migrate(sc, port, "--fault", fault, *extra)
    check(rc != 0, f"migration with fault {fault} did not complete")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    tlog = log_of(tgt)
    check(tgt.returncode != 0, "target refused to run on the received state")
    check("refused" in tlog, "target says it refused")
    if FAULT_EXPECT[fault]:
        check(FAULT_EXPECT[fault] in tlog, f"target names the problem ('{FAULT_EXPECT[fault]}')")
    check(stats is not None and stats.get("status") == "aborted",
          f"source got the abort token and resumed (status={stats and stats.get('status')})")
    s0 = status(sc)["app_stats"]["checks_passed"]
    wait_for(lambda: pagecounter_ok(sc, s0 + 2)[0], 30, "source oracle keeps passing after resume")
    check(src.poll() is None, "source still running with all its data")


def start_source_named(app, tag):
    c = os.path.join(TMP, f"{tag}-src.ctl")
    p = spawn("a", ["run", "--app", app, "--pages", "8", "--max-memory", "64M", "--control", c,
                    "--stats-interval", "0"], f"{tag}-source.log")
    wait_for(lambda: os.path.exists(c) and status(c) is not None, 30, "pre source")
    return p, c


def start_target_named(app, tag, port):
    c = os.path.join(TMP, f"{tag}-dst.ctl")
    p = spawn("b", ["receive", "--app", app, "--max-memory", "64M", "--listen", f"127.0.0.1:{port}",
                    "--control", c, "--stats-interval", "0", "--accept-timeout", "60"], f"{tag}-target.log")
    wait_for(lambda: "waiting for an incoming" in log_of(p), 30, "pre target")
    return p, c


def case_wrong_measurement():
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "8", "--max-memory", "64M"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "64M"], port,
                           image=os.path.join(BIN, "pagecounter_alt_enclave.enclave.so"))
    rc, stats, err = migrate(sc, port)
    check(rc != 0, "migration refused")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    check("measurement differs" in log_of(tgt) or "measurement differs" in err,
          "a peer with another measurement is named as such")
    check(status(sc)["app_stats"]["last_error"] == "", "source never froze and keeps running")


def case_untrusted_platform_key():
    setup_hosts(trust_each_other=False)
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "8", "--max-memory", "64M"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "64M"], port)
    rc, stats, err = migrate(sc, port)
    check(rc != 0, "migration refused")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    check("not in the trust store" in log_of(tgt) + err, "the untrusted platform is named as such")
    check(src.poll() is None and status(sc)["app_stats"]["last_error"] == "", "source unharmed")


def case_second_target_refused():
    setup_hosts()
    p1, p2 = free_port(), free_port()
    src, sc = start_source("pagecounter", ["--pages", "8", "--max-memory", "64M"])
    t1, _ = start_target("pagecounter", ["--max-memory", "64M"], p1)
    c2 = os.path.join(TMP, "b2.ctl")
    t2 = spawn("b", ["receive", "--app", "pagecounter", "--max-memory", "64M", "--listen",
                     f"127.0.0.1:{p2}", "--control", c2, "--accept-timeout", "20"], "target2.log")
    wait_for(lambda: "waiting for an incoming" in log_of(t2), 30, "second target")
    rc1, st1, _ = migrate(sc, p1)
    check(rc1 == 0, "first migration committed")
    rc2, st2, err2 = migrate(sc, p2)
    check(rc2 != 0, "a second migration of the same source is refused")
    time.sleep(0.5)
    check("migration received" not in log_of(t2), "the second target never received state")


def case_committed_source_refuses_ecalls():
    setup_hosts()
    port, sport, tport = free_port(), free_port(), free_port()
    src, sc = start_source("kvstore", ["--port", str(sport), "--max-memory", "64M"])
    kv_cmd(sport, "SET", "a", "1")
    # Keep a client connection to the source open across the migration.
    s = socket.create_connection(("127.0.0.1", sport), timeout=10)
    tgt, tc = start_target("kvstore", ["--port", str(tport), "--max-memory", "64M"], port)
    rc, stats, err = migrate(sc, port)
    check(rc == 0, "migration committed")
    try:
        s.sendall(b"GET a\r\n")
        r = s.recv(4096).decode(errors="replace")
    except OSError:
        r = "<closed>"
    check("+" not in r[:1] and not r.startswith("$1"), f"source no longer answers from its enclave: {r.strip()[:80]!r}")
    check(kv_cmd(tport, "GET", "a") == "$1\r\n1\r\n", "target serves the data")


def case_target_too_small():
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "48", "--max-memory", "256M"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "32M"], port)
    rc, stats, err = migrate(sc, port)
    check(rc != 0, "migration to a too-small target refused")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    check("--max-memory" in log_of(tgt), "target tells the operator to raise --max-memory")
    check(stats is not None and stats.get("status") == "aborted", "source resumed with the abort token")


def case_live_small_granules():
    """Live only: 4 KiB granules over a 512 MiB heap (131072 granules, twice vm.max_map_count)
    touched at random by 4 threads: the tracker keeps its mappings bounded and the oracle holds."""
    if not live():
        print("SKIP: live mode only")
        raise SystemExit(77)
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "512", "--max-memory", "1G", "--io-threads", "4"])
    wait_for(lambda: pagecounter_ok(sc)[0], 60, "source oracle check")
    tgt, tc = start_target("pagecounter", ["--max-memory", "1G", "--io-threads", "4"], port)
    rc, stats, err = migrate(sc, port, "--granule-pages", "1")
    check(rc == 0, f"migrate succeeded (rc={rc}) {err[-300:]}")
    t = stats.get("target", {})
    check(t.get("granule-bytes") == 4096, "4 KiB granules")
    check(stats.get("urgent-connection") is True and t.get("urgent-connection") is True,
          "both sides used a separate urgent connection")
    check(t.get("urgent-frames", 0) > 0 and stats.get("urgent-frames") == t.get("urgent-frames"),
          f"page answers arrived on it: source sent {stats.get('urgent-frames')}, "
          f"target imported {t.get('urgent-frames')} urgent frames")
    if MODE == "fault":  # uffd never splits the heap's mapping
        # The heap mapping has at most 2 x open runs + 1 VMAs. The tracker's budget (4096 runs) is
        # soft: faults open at once and idle tracker threads coalesce afterwards; the hard limit
        # is the kernel's vm.max_map_count.
        try:
            max_map = int(open("/proc/sys/vm/max_map_count").read())
        except (OSError, ValueError):
            max_map = 65530
        peak = t.get("max-open-runs", 0)
        check(0 < peak and 2 * peak + 1 < max_map // 2,
              f"heap mappings stayed far below vm.max_map_count: peak {peak} open runs -> "
              f"<= {2 * peak + 1} VMAs, limit {max_map}")
    print(f"  info: {t.get('faults')} faults, p50 {t.get('fault-latency-p50-us')} us, "
          f"p99 {t.get('fault-latency-p99-us')} us, population {t.get('population-time'):.0f} ms")
    before = status(tc)["app_stats"]
    wait_for(lambda: pagecounter_ok(tc, before["checks_passed"] + 1)[0], 60, "oracle check on the target")
    check(status(tc)["app_stats"]["last_error"] == "", "oracle passes on the target")


def live_only():
    if not live():
        print("SKIP: live mode only")
        raise SystemExit(77)


def run_recover_cut(pct):
    """Live only: both connections drop once pct% of the heap has streamed (while 3 threads touch
    random pages on the target): the source reconnects by itself, both enclaves move to fresh keys
    (next epoch), the stream goes on from the target's bitmap, the migration commits and the
    oracle (every page's checksum) passes on the target."""
    live_only()
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "96", "--max-memory", "256M", "--io-threads", "3"])
    wait_for(lambda: pagecounter_ok(sc)[0], 60, "source oracle check")
    tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--io-threads", "3",
                                           "--resume-timeout", "30"], port)
    cap = os.path.join(TMP, "s.cap")
    rc, stats, err = migrate(sc, port, "--cut-at", str(pct), "--capture", cap)
    check(rc == 0, f"migrate succeeded after the cut (rc={rc}) {err[-400:]}")
    check(stats.get("recoveries", 0) >= 1, f"the source reconnected ({stats.get('recoveries')} recoveries)")
    t = stats.get("target", {})
    check(t.get("recoveries", 0) >= 1, f"the target took the new connection ({t.get('recoveries')} recoveries)")
    check("cutting both connections" in log_of(src), "the cut happened (source log)")
    check(t.get("pages-installed") == t.get("heap-bytes", -1) // 4096,
          f"every heap page installed exactly once: {t.get('pages-installed')} pages")
    check(os.path.exists(cap + ".e2"), "the recovery connection is a new, captured stream")
    r = subprocess.run([os.path.join(BIN, "constmig"), "inspect", cap + ".e2"], capture_output=True, text=True)
    check(r.returncode == 0 and "RESUME" in r.stdout, "inspect decodes its RESUME frame")
    before = status(tc)["app_stats"]
    wait_for(lambda: pagecounter_ok(tc, before["checks_passed"] + 1)[0], 60, "oracle check on the target")
    check(status(tc)["app_stats"]["last_error"] == "", "oracle passes on the target: no page lost or stale")
    wait_for(lambda: src.poll() is not None, 30, "source to exit (committed)")


def case_recover_then_migrate_again():
    """Live only: A -> B recovered from a cut at 50%, then B -> C: an enclave that went through a
    recovery (a later epoch) starts its next migration afresh."""
    live_only()
    setup_hosts(names=("a", "b", "c"))
    p1, p2 = free_port(), free_port()
    src, sc = start_source("pagecounter", ["--pages", "64", "--max-memory", "256M", "--io-threads", "2"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--io-threads", "2"], p1)
    rc, stats, err = migrate(sc, p1, "--cut-at", "50")
    check(rc == 0 and stats.get("recoveries", 0) >= 1, f"A -> B completed after a recovery (rc={rc})")
    c3 = os.path.join(TMP, "c.ctl")
    third = spawn("c", ["receive", "--app", "pagecounter", "--listen", f"127.0.0.1:{p2}", "--control", c3,
                        "--max-memory", "256M", "--stats-interval", "0", "--accept-timeout", "60"], "c.log")
    wait_for(lambda: "waiting for an incoming" in log_of(third), 30, "host c to listen")
    rc, stats, err = migrate(tc, p2)
    check(rc == 0, f"B -> C completed (rc={rc}) {err[-300:]}")
    wait_for(lambda: pagecounter_ok(c3, 2)[0], 60, "oracle checks on host c")
    check(status(c3)["app_stats"]["last_error"] == "", "oracle passes on host c")


def case_recover_cut_10():
    run_recover_cut(10)


def case_recover_cut_50():
    run_recover_cut(50)


def case_recover_cut_90():
    run_recover_cut(90)


def case_recover_rejects_old_epoch():
    """Live only: after a recovery the source's host re-sends a PAGES batch sealed under the first
    epoch's keys: the target refuses it (it never accepts pages of an older epoch), the source
    gets the abort token and resumes with all its data."""
    live_only()
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "96", "--max-memory", "256M", "--io-threads", "2"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--resume-timeout", "30"], port)
    rc, stats, err = migrate(sc, port, "--cut-at", "50", "--fault", "old-epoch-replay")
    check(rc != 0, "the migration did not complete")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    tlog = log_of(tgt)
    check("reconnected" in tlog, "the recovery itself succeeded")
    check("failed authentication" in tlog, "target refused the old-epoch page ('failed authentication')")
    check(stats is not None and stats.get("status") == "aborted",
          f"source got the abort token and resumed (status={stats and stats.get('status')})")
    s0 = status(sc)["app_stats"]["checks_passed"]
    wait_for(lambda: pagecounter_ok(sc, s0 + 2)[0], 30, "source oracle keeps passing after resume")


def case_recover_source_killed():
    """Live only: the link drops mid-stream and the source dies before it can reconnect: the target
    waits its --resume-timeout, then stops the app with a clear error (it never serves on the
    partial heap)."""
    live_only()
    setup_hosts()
    port = free_port()
    src, sc = start_source("pagecounter", ["--pages", "96", "--max-memory", "256M", "--io-threads", "2"])
    tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--io-threads", "2",
                                           "--resume-timeout", "3"], port)
    # --resume-timeout 0: this source does not reconnect (so it cannot win the race with the kill).
    m = subprocess.Popen(migrate_cmd(sc, f"127.0.0.1:{port}", "--cut-at", "40", "--resume-timeout", "0"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "cutting both connections" in log_of(src), 60, "the cut")
        src.kill()
        src.wait()
        check(True, "source killed (SIGKILL) after the cut")
        wait_for(lambda: tgt.poll() is not None, 30, "target to stop")
    finally:
        m.kill()
        m.wait()
    tlog = log_of(tgt)
    check(tgt.returncode != 0, f"target exited with status {tgt.returncode}")
    check("did not come back" in tlog and "nothing built on the partial heap is served" in tlog,
          "target says why it stopped the app")


def case_chain_migration():
    """A -> B -> C: a target that received an enclave can send it on (same oracle state)."""
    setup_hosts(names=("a", "b", "c"))
    p1, p2 = free_port(), free_port()
    src, sc = start_source("pagecounter", ["--pages", "16", "--max-memory", "64M", "--io-threads", "2"])
    b, bc = start_target("pagecounter", ["--max-memory", "64M", "--io-threads", "2"], p1)
    rc, st, err = migrate(sc, p1)
    check(rc == 0, "A -> B committed")
    wait_for(lambda: pagecounter_ok(bc, 1)[0], 30, "oracle on B")
    cc = os.path.join(TMP, "c.ctl")
    c = spawn("c", ["receive", "--app", "pagecounter", "--max-memory", "64M", "--listen", f"127.0.0.1:{p2}",
                    "--control", cc, "--stats-interval", "0", "--accept-timeout", "60"], "c.log")
    wait_for(lambda: "waiting for an incoming" in log_of(c), 30, "C listening")
    before = status(bc)["app_stats"]
    rc, st, err = migrate(bc, p2)
    check(rc == 0, f"B -> C committed {err[-200:]}")
    wait_for(lambda: pagecounter_ok(cc, 2)[0], 30, "oracle checks on C")
    after = status(cc)["app_stats"]
    check(after["last_error"] == "" and after["rounds"] >= before["rounds"],
          f"C continues the same pages (rounds {before['rounds']} -> {after['rounds']})")


def access_only():
    if MODE != "access":
        print("SKIP: a case for the access tracker")
        raise SystemExit(77)


def case_access_bitmap_guards_without_faults():
    """The access tracker alone keeps the app off pages not yet restored: the target arms no
    fault tracker (no SIGSEGV handler, no userfaultfd), the enclave's checks fetch what they
    need, and the oracle passes. The control run uses an image that CLAIMS the access tracker
    but was compiled without the pass: with the same fault-free setup its oracle must break,
    which shows that the checks, not page faults, are what guards."""
    access_only()
    setup_hosts()

    def run(image, tag):
        port = free_port()
        img = os.path.join(BIN, image)
        src, sc = start_source("pagecounter", ["--pages", "48", "--max-memory", "256M",
                                               "--io-threads", "4", "--image", img])
        wait_for(lambda: pagecounter_ok(sc)[0], 30, f"{tag}: source oracle check")
        tgt, tc = start_target("pagecounter", ["--max-memory", "256M", "--io-threads", "4"], port,
                               image=img)
        rc, stats, err = migrate(sc, port)
        return src, sc, tgt, tc, rc, stats, err

    src, sc, tgt, tc, rc, stats, err = run("pagecounter_enclave.enclave.so", "instrumented")
    check(rc == 0, f"instrumented image: migrate succeeded (rc={rc}) {err[-300:]}")
    t = stats.get("target", {})
    check(t.get("tracker") == "access", "the target used the access tracker")
    check(t.get("host-tracker") == "none" and t.get("max-open-runs", 0) == 0,
          "the fault path is off: no mprotect/userfaultfd tracker armed, no protected runs")
    check(t.get("faults", 0) > 0, f"the enclave's checks fetched pages {t.get('faults')} times "
          f"(p50 {t.get('fault-latency-p50-us')} us)")
    wait_for(lambda: src.poll() is not None, 20, "source to exit after commit")
    before = status(tc)["app_stats"]
    wait_for(lambda: pagecounter_ok(tc, before["checks_passed"] + 2)[0], 30,
             "two more oracle checks on the target")
    check(status(tc)["app_stats"]["last_error"] == "", "oracle passes on the target")
    stop_all()
    PROCS.clear()

    src, sc, tgt, tc, rc, stats, err = run("pagecounter_unchecked_enclave.enclave.so", "unchecked")
    broken = rc != 0
    if broken:
        try:
            tgt.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        why = f"migrate failed (rc={rc}); the target exited with {tgt.poll()} " \
              f"(negative: killed by that signal, e.g. reading a pointer from a page not restored)"
    if not broken:
        try:
            wait_for(lambda: tgt.poll() is not None or
                     (status(tc) or {}).get("app_stats", {}).get("last_error", "") != "", 20,
                     "the unchecked target's oracle to break")
            broken = True
            why = "target died" if tgt.poll() is not None else \
                "oracle: " + status(tc)["app_stats"]["last_error"][:120]
        except Fail:
            pass
    check(broken, f"control: without compiled-in checks the same setup loses correctness ({why})")


def case_access_needs_instrumented_image():
    """--tracker access with an image built without the pass is refused by the target enclave;
    the source gets the abort token and resumes with all its data."""
    access_only()
    setup_hosts()
    port = free_port()
    img = os.path.join(BIN, "pagecounter_enclave_plain.enclave.so")
    src, sc = start_source("pagecounter", ["--pages", "16", "--max-memory", "128M", "--image", img])
    wait_for(lambda: pagecounter_ok(sc)[0], 30, "source oracle check")
    tgt, tc = start_target("pagecounter", ["--max-memory", "128M"], port, image=img)
    rc, stats, err = migrate(sc, port)
    check(rc != 0, "migration refused")
    wait_for(lambda: tgt.poll() is not None, 30, "target to exit")
    check("not compiled with the Access Tracker" in log_of(tgt), "the target names the missing pass")
    check(stats is not None and stats.get("status") == "aborted", "source got the abort token")
    s0 = status(sc)["app_stats"]["checks_passed"]
    wait_for(lambda: pagecounter_ok(sc, s0 + 2)[0], 30, "source oracle keeps passing after resume")


def case_netns():
    """The same oracle migration between two network-namespace hosts over veth."""
    global NETNS_PREFIX
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "netns-hosts.sh")
    prefix = "cmt" + str(os.getpid() % 100000)
    r = subprocess.run([script, "up", "--prefix", prefix], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"SKIP: network namespaces unavailable: {r.stderr.strip()[:200]}")
        raise SystemExit(77)
    try:
        NETNS_PREFIX = prefix
        setup_hosts()
        src, sc = start_source("pagecounter", ["--pages", "32", "--max-memory", "128M", "--io-threads", "2"])
        c = ctl("b", "pagecounter")
        tgt = spawn("b", ["receive", "--app", "pagecounter", "--listen", "10.77.0.2:7000", "--control", c,
                          "--max-memory", "128M", "--stats-interval", "0", "--accept-timeout", "60"], "target.log")
        wait_for(lambda: "waiting for an incoming" in log_of(tgt), 30, "target in namespace b")
        r = subprocess.run(migrate_cmd(sc, "10.77.0.2:7000"), capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"migrated from {prefix}-a (10.77.0.1) to {prefix}-b (10.77.0.2) over veth")
        wait_for(lambda: pagecounter_ok(c, 2)[0], 30, "oracle checks on host b")
        check(status(c)["app_stats"]["last_error"] == "", "oracle passes on host b")
    finally:
        NETNS_PREFIX = None
        stop_all()
        subprocess.run([script, "down", "--prefix", prefix], capture_output=True)


def uffd_unavailable():
    """True (after printing why) if MODE is uffd and this user cannot use userfaultfd."""
    if MODE != "uffd" or os.geteuid() == 0:
        return False
    try:
        unpriv = open("/proc/sys/vm/unprivileged_userfaultfd").read().strip()
    except OSError:
        unpriv = "0"
    if unpriv == "1":
        return False
    print("SKIP: userfaultfd needs root or vm.unprivileged_userfaultfd=1")
    return True


def main():
    global BIN, TMP, MODE
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--mode", choices=sorted(MODE_ARGS), default="fault")
    ap.add_argument("case")
    a = ap.parse_args()
    MODE = a.mode
    if uffd_unavailable():
        return 77
    BIN = os.path.abspath(a.bin)
    TMP = tempfile.mkdtemp(prefix="cmtest-")
    name = a.case
    fn = globals().get("case_" + name)
    if name.startswith("fault_"):
        fault = name[len("fault_"):].replace("_", "-")
        fn = lambda: run_fault(fault)  # noqa: E731
    if fn is None:
        print(f"unknown case {name}")
        return 2
    return run_reported(name, fn)


def run_reported(name, fn):
    """Runs one case `fn`: prints PASS/FAIL, stops every process it started, shows their logs if
    it failed, removes TMP. Returns the exit code (0, 1, or a case's SystemExit code such as 77)."""
    print(f"== {name}")
    rc = 0
    try:
        fn()
        print(f"PASS {name}")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except Fail as e:
        print(f"FAIL {name}: {e}")
        rc = 1
    except Exception as e:  # a timeout or a crash in the harness: still show the logs
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        rc = 1
    finally:
        stop_all()
        if rc != 0:
            for p in PROCS:
                print(f"---- {p.logname}")
                print(log_of(p)[-3000:])
        shutil.rmtree(TMP, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
