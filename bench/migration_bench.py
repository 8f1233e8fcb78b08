#!/usr/bin/python3
"""Live (ConstMig) vs stop-and-copy migration of the kvstore enclave app, several heap sizes, one run.

For each size and each mode: start a fresh source `constmig run --app kvstore`, fill its enclave
store with DEBUG POPULATE (4000-byte values), start a fresh target `constmig receive`, start the load
clients (bench/kv_load_client.py x --clients processes, pipelined GET/SET mix on the populated keys,
inside host a) a few seconds before the migration, run `constmig migrate`, keep the clients running
a few seconds after it returned (each follows the service to the target when the source refuses or
closes), check DBSIZE on the target, stop everything. Modes:
  stop-and-copy   constmig migrate --mode stop-and-copy      (the MigSGX-style baseline)
  fault           constmig migrate --mode constmig --tracker fault   (mprotect + SIGSEGV)
  uffd            constmig migrate --mode constmig --tracker uffd    (userfaultfd)
Recorded per run: the migration stats (downtime, total/setup/pages time, transferred, post-copy
requests and pages, the target's population time, fault latency, timeline), the client's ops/s
timeline, pre-/post-migration ops/s and the client gap. In the same run, AES-256-GCM on 4 KiB
records on one core (`openssl speed -evp`) gives the reference the stream throughput is reported
against.

Hosts: the two network-namespace hosts of scripts/netns-hosts.sh when available, else loopback
(said in the output). Writes migration_live_vs_stop_and_copy.json and two PNG plots.
Usage: bench/migration_bench.py [--build build] [--sizes 256M,1G,4G,8G]
                                [--modes stop-and-copy,fault,uffd] [--out bench-results]
       bench/migration_bench.py --from-json OLD.json --out DIR   (summary, table, plots again; no runs)
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "bench", "kv_load_client.py")
MODES = {"stop-and-copy": ["--mode", "stop-and-copy"],
         "fault": ["--mode", "constmig", "--tracker", "fault"],
         "uffd": ["--mode", "constmig", "--tracker", "uffd"]}
LIVE = ("fault", "uffd")
CHUNK = 50000  # keys per DEBUG POPULATE call: keys k<first>:0 .. k<first>:<n-1>
# From `constmig migrate`'s JSON (source object) and its nested target object (docs/stats.md).
SOURCE_FIELDS = ["downtime", "total-time", "setup-time", "pages-time", "transferred", "postcopy-requests",
                 "postcopy-pages", "pages-pushed"]
TARGET_FIELDS = ["population-time", "fault-latency-p50-us", "fault-latency-p99-us", "faults", "postcopy-blocktime",
                 "arm-time", "resume-time", "population-timeline"]


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s.upper().replace("IB", "").replace("B", ""))
    if not m:
        sys.exit(f"bad size {s}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def aes_gcm_single_core():
    out = subprocess.run(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "4096", "-seconds", "2"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.lower().startswith("aes-256-gcm"):
            val = line.split()[-1]
            if val.endswith("k"):
                return float(val[:-1]) * 1000.0  # bytes/s
    return None


def kv(hosts, host, port, *args, timeout=600):
    """One command with redis-cli, run INSIDE the host's namespace (its address exists only there)."""
    r = subprocess.run(hosts.cmd(host, ["redis-cli", "-h", hosts.addr[host], "-p", str(port)] + [str(a) for a in args]),
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout.strip()


class Hosts:
    def __init__(self, use_netns):
        self.netns = False
        if use_netns and os.geteuid() == 0:
            r = subprocess.run([os.path.join(ROOT, "scripts/netns-hosts.sh"), "up", "--prefix", "cmbench"],
                               capture_output=True, text=True)
            self.netns = r.returncode == 0
            if not self.netns:
                print(f"netns unavailable ({r.stderr.strip()[:200]}): falling back to loopback")
        self.addr = {"a": "10.77.0.1", "b": "10.77.0.2"} if self.netns else {"a": "127.0.0.1", "b": "127.0.0.1"}
        print(f"hosts: {'network namespaces cmbench-a/cmbench-b over veth' if self.netns else 'loopback'}")

    def cmd(self, host, argv):
        if self.netns:
            return ["ip", "netns", "exec", f"cmbench-{host}"] + argv
        return argv

    def down(self):
        if self.netns:
            subprocess.run([os.path.join(ROOT, "scripts/netns-hosts.sh"), "down", "--prefix", "cmbench"],
                           capture_output=True)


def wait_for(pred, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1)
    return False


def stop_proc(p, sig=signal.SIGINT, timeout=30):
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def tail(path, n=50):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({e})"


class RunFailed(Exception):
    pass


class CpuSampler:
    """CPU use of the source, target and client processes every 100 ms (from /proc/PID/stat), and when
    the source exited: shows what competes for the cores while the client measures."""

    def __init__(self, procs):
        self.procs = procs  # name -> Popen (`ip netns exec` execs the command: same pid)
        self.rows = []
        self.exited = {}
        self.stop = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def cpu(self, p):
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            return (int(v[11]) + int(v[12])) / self.tick
        except (OSError, IndexError, ValueError):
            return None

    def loop(self):
        last = {}
        nxt = time.time()
        while not self.stop.is_set():
            nxt += 0.1
            time.sleep(max(0.0, nxt - time.time()))
            row = [round(time.time(), 3)]
            for n, p in list(self.procs.items()):
                if p is None:
                    row.append(None)
                    continue
                if p.poll() is not None and n not in self.exited:
                    self.exited[n] = time.time()
                c = self.cpu(p)
                row.append(None if c is None or n not in last or last[n] is None else round((c - last[n]) / 0.1, 2))
                last[n] = c
            row.append(mem_available())
            self.rows.append(row)

    def finish(self):
        self.stop.set()
        self.th.join(timeout=2)


def mem_available():
    """MemAvailable of the box in bytes (the runs' peak memory shows as its minimum)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_clients(paths):
    """The load clients' output, merged: timeline (ops added up per 100 ms grid point, host 'a', 'b' or
    'a+b' while some clients have switched and some not), switch events, and per-client summaries."""
    grid, events, summaries = {}, [], []
    for path in paths:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if "summary" in j:
                    summaries.append(j["summary"])
                elif "event" in j:
                    events.append(j)
                elif "ops" in j:
                    g = grid.setdefault(round(j["t"], 1), {"ops": 0, "hosts": set(), "n": 0})
                    g["ops"] += j["ops"]
                    g["hosts"].add(j["host"])
                    g["n"] += 1
    n = len(paths)
    # Only grid points every client reported (the first and last may miss some).
    samples = [{"t": t, "ops": g["ops"], "host": "+".join(sorted(g["hosts"]))}
               for t, g in sorted(grid.items()) if g["n"] == n]
    return samples, sorted(events, key=lambda e: e["t"]), summaries


def window_rate(samples, t0, t1):
    """Mean ops/s over the samples whose 100 ms interval ends in (t0, t1]."""
    ops = [s["ops"] for s in samples if t0 < s["t"] <= t1]
    if not ops or samples[-1]["t"] < t1 - 0.15 or samples[0]["t"] > t0 + 0.15:
        return None  # the client did not cover the window
    return sum(ops) / (t1 - t0)


def time_to_recover(samples, t_from, rate, frac, span=0.5, interval=0.1):
    """Seconds from t_from until a span-long window of samples, all after t_from, averages frac x rate
    again (the start of the first such window; 100 ms resolution)."""
    for i, s in enumerate(samples):
        start = s["t"] - interval
        if start < t_from - 1e-6:
            continue
        w = [x["ops"] for x in samples[i:] if x["t"] <= start + span + 1e-6]
        if samples[-1]["t"] < start + span - 1e-6:
            return None
        if sum(w) / span >= frac * rate:
            return start - t_from
    return None


def to_ms(v):
    return None if v is None else round(v * 1000)


def longest_zero_run(samples, t0, t1, interval):
    """Longest run of consecutive zero-ops samples ending in (t0, t1], in ms (100 ms resolution)."""
    best = run = 0
    for s in samples:
        if not (t0 < s["t"] <= t1):
            continue
        run = run + 1 if s["ops"] == 0 else 0
        best = max(best, run)
    return best * interval * 1000


def target_stats_from_log(path):
    """The target logs its whole stats object ('migration received: {...}'), timeline included."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("migration received: "):
                    return json.loads(line[len("migration received: "):])
    except (OSError, ValueError):
        pass
    return {}


def run_one(args, constmig, tmp, hosts, size_s, mode, aes):
    size = parse_size(size_s)
    limit = int(size * 1.4) + (64 << 20)
    value = 4000
    count = size // (value + 96)
    sport, tport, mport = 6400, 6401, 7400
    sctl, tctl = os.path.join(tmp, "src.ctl"), os.path.join(tmp, "dst.ctl")
    for p in (sctl, tctl):
        if os.path.exists(p):
            os.unlink(p)
    names = {n: os.path.join(tmp, f"{n}.log") for n in ["src", "dst"] + [f"client{i}" for i in range(args.clients)]
             + [f"client{i}.err" for i in range(args.clients)]}
    logs = {n: open(p, "w") for n, p in names.items()}
    src = dst = sampler = None
    clients = []
    row = {"size": size_s, "mode": mode, "keys": count}
    migrate_stderr = ""

    def fail(what):
        raise RunFailed(what)
    try:
        src = subprocess.Popen(hosts.cmd("a", [constmig, "--state-dir", os.path.join(tmp, "a"), "run", "--app", "kvstore",
                                               "--bind", hosts.addr["a"], "--port", str(sport), "--max-memory", str(limit),
                                               "--control", sctl, "--stats-interval", "0"]),
                               stdout=logs["src"], stderr=subprocess.STDOUT)
        if not wait_for(lambda: os.path.exists(sctl), 30):
            fail("source did not start")
        t0 = time.time()
        # Fill in chunks so no single ECALL runs for minutes.
        for first in range(0, count, CHUNK):
            n = min(CHUNK, count - first)
            r = kv(hosts, "a", sport, "DEBUG", "POPULATE", str(n), f"k{first}", str(value))
            if r != "OK":
                fail(f"populate failed: {r}")
        fill_s = time.time() - t0
        st = json.loads(subprocess.run([constmig, "status", "--control", sctl], capture_output=True, text=True).stdout)
        heap = st.get("heap", {})
        print(f"== {size_s} {mode}: {count} keys x {value} B, heap in use {heap.get('in_use', 0) / 2**20:.0f} MiB "
              f"(filled in {fill_s:.1f} s)", flush=True)
        dst = subprocess.Popen(hosts.cmd("b", [constmig, "--state-dir", os.path.join(tmp, "b"), "receive", "--app", "kvstore",
                                               "--bind", hosts.addr["b"], "--port", str(tport), "--max-memory", str(limit),
                                               "--listen", f"{hosts.addr['b']}:{mport}", "--workers", str(args.workers),
                                               "--control", tctl, "--stats-interval", "0"]),
                               stdout=logs["dst"], stderr=subprocess.STDOUT)
        if not wait_for(lambda: "waiting for an incoming" in open(names["dst"]).read(), 30):
            fail("target did not start")
        if not args.no_load:
            for i in range(args.clients):
                clients.append(subprocess.Popen(hosts.cmd("a", [sys.executable, CLIENT, "--source", f"{hosts.addr['a']}:{sport}",
                                                                "--target", f"{hosts.addr['b']}:{tport}", "--keys", str(count),
                                                                "--chunk", str(CHUNK), "--value-size", str(value),
                                                                "--pipeline", str(args.pipeline), "--set-ratio", str(args.set_ratio),
                                                                "--interval", "0.1", "--seed", str(i + 1)]),
                                                stdout=logs[f"client{i}"], stderr=logs[f"client{i}.err"]))
        sampler = CpuSampler(dict({"src": src, "dst": dst}, **{f"client{i}": c for i, c in enumerate(clients)}))
        if clients:
            time.sleep(args.pre)
            if any(c.poll() is not None for c in clients):
                fail("a load client exited before the migration")
        mem_before = mem_available()
        t_mig = time.time()
        try:
            r = subprocess.run([constmig, "migrate", "--control", sctl, "--to", f"{hosts.addr['b']}:{mport}",
                                "--workers", str(args.workers)] + MODES[mode],
                               capture_output=True, text=True, timeout=args.migrate_timeout)
        except subprocess.TimeoutExpired as e:
            migrate_stderr = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            fail(f"migrate did not return within {args.migrate_timeout} s (hang)")
        t_ret = time.time()
        migrate_stderr = r.stderr
        if r.returncode != 0:
            fail(f"migration failed (exit {r.returncode})")
        m = json.loads(r.stdout)
        if m.get("status") != "completed":
            fail(f"migration status {m.get('status')}: {m.get('error')}")
        if clients:
            time.sleep(max(args.tail, 1.0 + args.post_window + 0.5))
            for c in clients:
                c.send_signal(signal.SIGTERM)
            for c in clients:
                stop_proc(c, signal.SIGTERM, 10)
        sampler.finish()
        dbsize = kv(hosts, "b", tport, "DBSIZE")
        ok = dbsize == str(count)
        tgt = dict(m.get("target", {}))
        if "population-timeline" not in tgt:  # dropped from the STATS frame when long: the log has it
            tl = target_stats_from_log(names["dst"]).get("population-timeline")
            if tl is not None:
                tgt["population-timeline"] = tl
        thr = m["heap-bytes"] / (m["pages-time"] / 1000.0) if m.get("pages-time") else None
        row.update({"heap_bytes": m["heap-bytes"], "fill_s": round(fill_s, 1),
                    "downtime_ms": m.get("downtime"), "total_time_ms": m["total-time"],
                    "setup_time_ms": m["setup-time"], "pages_time_ms": m["pages-time"],
                    "transferred": m["transferred"], "zero_pages": m["zero-pages"],
                    "stream_bytes_per_s": thr, "stream_vs_aes_single_core": thr / aes if aes and thr else None,
                    "dbsize_verified": ok, "dbsize_target": dbsize,
                    "migrate_started": t_mig, "migrate_returned": t_ret})
        for k in SOURCE_FIELDS:
            row[k] = m.get(k)
        row["target"] = {k: tgt.get(k) for k in TARGET_FIELDS}
        if tgt.get("first-served-ns") and m.get("downtime") is not None:
            row["target_first_served"] = tgt["first-served-ns"] / 1e9
            row["hold_started"] = row["target_first_served"] - m["downtime"] / 1000.0
        mem = [x[-1] for x in sampler.rows if x[-1] is not None]
        row["mem_available_min_bytes"] = min(mem) if mem else None
        row["mem_available_before_bytes"] = mem_before
        if "src" in sampler.exited:
            row["source_exited_after_return_s"] = round(sampler.exited["src"] - t_ret, 3)
        row["cpu_timeline"] = {"columns": ["t since migrate started", "source cores", "target cores"]
                               + [f"client{i} cores" for i in range(len(clients))] + ["MemAvailable bytes"],
                               "rows": [[round(x[0] - t_mig, 2)] + x[1:] for x in sampler.rows]}
        row["stats"] = m
        if clients:
            samples, events, summaries = read_clients([names[f"client{i}"] for i in range(len(clients))])
            switches = [x["switch"] for x in summaries if x.get("switch")]
            errs = {f"client{i}": tail(names[f"client{i}.err"], 20) for i in range(len(clients))
                    if os.path.getsize(names[f"client{i}.err"])}
            rcs = [c.returncode for c in clients]
            summary = {"clients": len(clients), "reported": len(summaries), "exit_codes": rcs, "stderr": errs,
                       "client-gap-ms": max((x["client-gap-ms"] for x in summaries), default=None),
                       "switched": len(switches),
                       "switch": min(switches, key=lambda x: x["t"]) if switches else None,
                       "last_switch_t": max((x["t"] for x in switches), default=None)}
            for k in ("ops", "gets", "sets", "get_misses", "bad_values", "errors_source", "errors_target",
                      "reconnects_target"):
                summary[k] = sum(x.get(k, 0) for x in summaries)
            pre = window_rate(samples, t_mig - 2.0, t_mig)
            post = window_rate(samples, t_ret + 1.0, t_ret + 1.0 + args.post_window)
            during = window_rate(samples, t_mig, t_ret) if t_ret - t_mig >= 0.2 else None
            t_end = samples[-1]["t"] if samples else t_ret
            tail_rate = window_rate(samples, t_end - 2.0, t_end) if t_end - t_ret >= 3.0 else None
            t_hold = row.get("hold_started", t_mig)
            row["load"] = {"pre_ops_per_s": pre, "post_ops_per_s": post,
                           "post_over_pre": post / pre if pre and post is not None else None,
                           "during_ops_per_s": during,
                           "tail_ops_per_s": tail_rate, "tail_over_pre": tail_rate / pre if pre and tail_rate else None,
                           "tail_window_after_return_s": [round(t_end - 2.0 - t_ret, 2), round(t_end - t_ret, 2)],
                           # From the first held ECALL: service back to half / 90% of pre (0.5 s means).
                           "time_to_50pct_ms": to_ms(time_to_recover(samples, t_hold, pre, 0.5)) if pre else None,
                           "time_to_90pct_ms": to_ms(time_to_recover(samples, t_hold, pre, 0.9)) if pre else None,
                           # The longest wait of any client between two answered round trips.
                           "client_gap_ms": summary["client-gap-ms"],
                           "zero_ops_gap_ms_timeline": longest_zero_run(samples, t_mig - 1.0, t_ret + 1.0 + args.post_window, 0.1),
                           "switch": summary["switch"],
                           "client_summary": summary, "per_client": summaries, "events": events,
                           "timeline": [[round(s["t"] - t_mig, 2), s["ops"], s["host"]] for s in samples]}
            if summary["switch"]:
                row["load"]["switch_after_migrate_s"] = round(summary["switch"]["t"] - t_mig, 3)
                row["load"]["last_switch_after_migrate_s"] = round(summary["last_switch_t"] - t_mig, 3)
        t = row["target"]
        lo = row.get("load", {})
        print(f"   downtime {row['downtime_ms']:.1f} ms, total {row['total_time_ms']:.0f} ms, setup {row['setup_time_ms']:.0f} ms, "
              f"pages {row['pages_time_ms']:.0f} ms"
              + (f", stream {thr / 1e9:.2f} GB/s" if thr else "")
              + (f", population {t['population-time']:.0f} ms, post-copy requests {row['postcopy-requests']}, "
                 f"fault p50/p99 {t['fault-latency-p50-us'] or 0:.0f}/{t['fault-latency-p99-us'] or 0:.0f} us"
                 if mode in LIVE and t.get("population-time") is not None else "")
              + f", DBSIZE on target {'matches' if ok else 'MISMATCH (' + dbsize + ')'}", flush=True)
        if lo:
            fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
            print(f"   load: pre {fmt(lo['pre_ops_per_s'])} ops/s, post {fmt(lo['post_ops_per_s'])} ops/s"
                  + (f" ({lo['post_over_pre']:.2f}x)" if lo["post_over_pre"] is not None else "")
                  + f", during {fmt(lo['during_ops_per_s'])} ops/s, last 2 s {fmt(lo['tail_ops_per_s'])} ops/s"
                  + f", client gap {lo['client_gap_ms']} ms, back to 50%/90% of pre {lo['time_to_50pct_ms']}/{lo['time_to_90pct_ms']} ms after the hold"
                  + (f", {lo['client_summary']['switched']}/{len(clients)} clients switched to b "
                     f"{lo['switch_after_migrate_s']:.2f}-{lo['last_switch_after_migrate_s']:.2f} s after migrate started "
                     f"({lo['switch']['reason'][:80]})" if lo.get("switch") else ", NEVER switched to b"), flush=True)
            cs = lo["client_summary"] or {}
            if cs.get("get_misses") or cs.get("bad_values") or cs.get("errors_target") or cs.get("switched") != len(clients) \
                    or cs.get("reported") != len(clients):
                print(f"   WARNING clients saw get_misses={cs.get('get_misses')} bad_values={cs.get('bad_values')} "
                      f"errors_target={cs.get('errors_target')}, {cs.get('switched')} switched, {cs.get('reported')} "
                      f"reported of {len(clients)}", flush=True)
        return row
    except RunFailed as e:
        # Keep the evidence: the tmp dir goes away.
        keep = os.path.join(args.out, f"failed-{size_s}-{mode}")
        os.makedirs(keep, exist_ok=True)
        for f in logs.values():
            f.flush()
        for n, p in names.items():
            shutil.copy(p, os.path.join(keep, f"{n}.log"))
        with open(os.path.join(keep, "migrate.stderr"), "w") as f:
            f.write(migrate_stderr)
        if os.path.exists(sctl):
            try:
                s = subprocess.run([constmig, "status", "--control", sctl], capture_output=True, text=True, timeout=30)
                status = s.stdout + s.stderr
            except subprocess.TimeoutExpired:
                status = "constmig status did not answer within 30 s"
            with open(os.path.join(keep, "source-status.json"), "w") as f:
                f.write(status)
        row.update({"failed": str(e), "logs": keep})
        print(f"   FAILED: {e}\n--- source log (last 50 lines)\n{tail(names['src'])}\n--- target log (last 50 lines)\n"
              f"{tail(names['dst'])}\n--- migrate stderr\n{migrate_stderr[-4000:]}\n(logs kept in {keep})", flush=True)
        return row
    finally:
        if sampler is not None:
            sampler.finish()
        for c in clients:
            stop_proc(c, signal.SIGTERM, 10)
        stop_proc(dst)
        stop_proc(src)
        for f in logs.values():
            f.close()


def summarize(results, sizes, modes):
    ok = {(r["size"], r["mode"]): r for r in results if "failed" not in r and "skipped" not in r}
    per_size = []
    for s in sizes:
        e = {"size": s}
        sc = ok.get((s, "stop-and-copy"))
        for m in modes:
            r = ok.get((s, m))
            if r is None:
                continue
            lo = r.get("load", {})
            d = {"downtime_ms": r["downtime_ms"], "total_time_ms": r["total_time_ms"],
                 "post_over_pre": lo.get("post_over_pre"), "client_gap_ms": lo.get("client_gap_ms"),
                 "tail_over_pre": lo.get("tail_over_pre"), "time_to_90pct_ms": lo.get("time_to_90pct_ms"),
                 "pre_ops_per_s": lo.get("pre_ops_per_s"),
                 "dbsize_verified": r["dbsize_verified"]}
            d["time_to_50pct_ms"] = lo.get("time_to_50pct_ms")
            if m in LIVE:
                pop = r["target"].get("population-time")
                tl = lo.get("timeline")
                if pop and tl and r.get("target_first_served"):
                    # Mean ops/s while the target populated its heap (live: the app runs meanwhile).
                    t0 = r["target_first_served"] - r["migrate_started"]
                    t1 = t0 + pop / 1000.0
                    d["population_ops_per_s"] = sum(o for t, o, _ in tl if t0 < t <= t1) / (t1 - t0)
                    if lo.get("pre_ops_per_s"):
                        d["population_over_pre"] = d["population_ops_per_s"] / lo["pre_ops_per_s"]
                d["fault_latency_p50_us"] = r["target"].get("fault-latency-p50-us")
                d["fault_latency_p99_us"] = r["target"].get("fault-latency-p99-us")
                d["population_time_ms"] = r["target"].get("population-time")
                if sc and sc["downtime_ms"] and r["downtime_ms"] is not None:
                    d["downtime_reduction_pct"] = 100.0 * (1.0 - r["downtime_ms"] / sc["downtime_ms"])
                if sc and sc["total_time_ms"]:
                    d["total_time_vs_stop_and_copy"] = r["total_time_ms"] / sc["total_time_ms"]
            e[m] = d
        per_size.append(e)
    flat = {}
    for m in modes:
        if m not in LIVE:
            continue
        d = [ok[(s, m)]["downtime_ms"] for s in sizes if (s, m) in ok and ok[(s, m)]["downtime_ms"] is not None]
        if len(d) >= 2:
            mean = sum(d) / len(d)
            spread = (max(d) - min(d)) / mean if mean else None
            flat[m] = {"sizes": [s for s in sizes if (s, m) in ok], "downtime_ms": d, "mean_ms": mean,
                       "max_min_spread_over_mean": spread,
                       "within_20pct_of_mean": max(abs(x - mean) for x in d) <= 0.2 * mean if mean else None}
    skipped = [{"size": r["size"], "mode": r["mode"], "reason": r["skipped"]} for r in results if "skipped" in r]
    return {"per_size": per_size, "live_downtime_flatness": flat, "skipped": skipped}


def table(summary, modes):
    """The printed table (also written to the .txt): one row per size and mode."""
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    head = ["size", "mode", "downtime ms", "reduction", "total ms", "total/s&c", "population ms", "fault p50/p99 us",
            "pre ops/s", "during pop./pre", "post/pre", "last2s/pre", "client gap ms", "to 50%/90% ms", "DBSIZE"]
    rows = []
    for e in summary["per_size"]:
        for m in modes:
            d = e.get(m)
            if d is None:
                rows.append([e["size"], m] + ["-"] * (len(head) - 2))
                continue
            rows.append([e["size"], m, fmt(d["downtime_ms"]),
                         fmt(d.get("downtime_reduction_pct"), "{:.2f}%"), fmt(d["total_time_ms"], "{:.0f}"),
                         fmt(d.get("total_time_vs_stop_and_copy"), "{:.2f}x"), fmt(d.get("population_time_ms"), "{:.0f}"),
                         "-" if m not in LIVE else
                         f"{fmt(d.get('fault_latency_p50_us'), '{:.0f}')}/{fmt(d.get('fault_latency_p99_us'), '{:.0f}')}",
                         fmt(d.get("pre_ops_per_s"), "{:.0f}"), fmt(d.get("population_over_pre"), "{:.3f}"),
                         fmt(d.get("post_over_pre"), "{:.2f}"),
                         fmt(d.get("tail_over_pre"), "{:.2f}"), fmt(d.get("client_gap_ms"), "{:.0f}"),
                         f"{fmt(d.get('time_to_50pct_ms'), '{:.0f}')}/{fmt(d.get('time_to_90pct_ms'), '{:.0f}')}",
                         "ok" if d["dbsize_verified"] else "MISMATCH"])
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).rjust(n) for x, n in zip(r, w)) for r in [head] + rows]
    for m, f in summary["live_downtime_flatness"].items():
        lines.append(f"live downtime flatness ({m}): {', '.join(f'{d:.1f}' for d in f['downtime_ms'])} ms over "
                     f"{','.join(f['sizes'])}; mean {f['mean_ms']:.1f} ms, (max-min)/mean = {f['max_min_spread_over_mean']:.2f} "
                     f"({'all within' if f['within_20pct_of_mean'] else 'NOT all within'} +-20% of the mean)")
    for sk in summary.get("skipped", []):
        lines.append(f"skipped: {sk['size']} {sk['mode']} ({sk['reason']})")
    return "\n".join(lines)


def plots(out, results, sizes, modes, largest):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    ok = [r for r in results if "failed" not in r and "skipped" not in r]
    colors = {"stop-and-copy": "tab:red", "fault": "tab:blue", "uffd": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in modes:
        rs = sorted((r for r in ok if r["mode"] == m), key=lambda r: r["heap_bytes"])
        if not rs:
            continue
        xs = [r["heap_bytes"] / 2**30 for r in rs]
        ax.plot(xs, [max(r["downtime_ms"] or 0, 1e-3) for r in rs], "o-", color=colors.get(m), label=f"downtime, {m}")
        ax.plot(xs, [r["total_time_ms"] for r in rs], "s:", color=colors.get(m), alpha=0.5, label=f"total time, {m}")
    ax.set_xscale("log", base=2)
    xt = sorted({r["heap_bytes"] / 2**30 for r in ok})
    ax.set_xticks(xt)
    ax.set_xticklabels([f"{x:.2g}" for x in xt])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("enclave heap moved (GiB)")
    ax.set_ylabel("ms (log)")
    ax.set_title(f"kvstore migration under load: live (ConstMig) vs stop-and-copy\n({os.cpu_count()} CPUs, emulated SGX)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out, "migration_live_vs_stop_and_copy.png")
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")
    # Each mode at the largest size (the largest it has, if it was skipped there).
    rs = []
    for m in modes:
        mine = [r for r in ok if r["mode"] == m and r.get("load")]
        if mine:
            rs.append(next((r for r in mine if r["size"] == largest), max(mine, key=lambda r: r["heap_bytes"])))
    if not rs:
        return
    fig, axs = plt.subplots(len(rs), 1, figsize=(11, 2.6 * len(rs)), sharex=True, squeeze=False)
    for ax, r in zip(axs[:, 0], rs):
        tl = r["load"]["timeline"]
        ax.plot([p[0] for p in tl], [p[1] * 10 for p in tl], "-", color=colors.get(r["mode"]), lw=1)
        ret = r["migrate_returned"] - r["migrate_started"]
        ax.axvline(0, color="k", ls="--", lw=1, label="migrate started")
        ax.axvline(ret, color="k", ls=":", lw=1, label="migrate returned")
        if r.get("hold_started") is not None:
            ax.axvspan(r["hold_started"] - r["migrate_started"], r["target_first_served"] - r["migrate_started"],
                       color="orange", alpha=0.3, label=f"downtime {r['downtime_ms']:.1f} ms")
            pop = r["target"].get("population-time")
            if r["mode"] in LIVE and pop:
                t0 = r["target_first_served"] - r["migrate_started"]
                ax.axvspan(t0, t0 + pop / 1000.0, color="tab:blue", alpha=0.08,
                           label=f"live: heap populating ({pop / 1000:.1f} s)")
        ax.set_ylabel("ops/s")
        ax.set_title(f"{r['mode']} ({r['size']})", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axs[-1, 0].set_xlabel("s since `constmig migrate` started (client: pipelined GET/SET, 100 ms bins)")
    fig.tight_layout()
    png = os.path.join(out, "migration_throughput_timeline.png")
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


def write_outputs(doc, out):
    """Summary, table, JSON, TXT and plots from the measured results (also for --from-json)."""
    modes, sizes = doc["modes"], doc["sizes"]
    doc["summary"] = summarize(doc["results"], sizes, modes)
    doc["table"] = text = table(doc["summary"], modes)
    print("\n" + text)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "migration_live_vs_stop_and_copy.json")
    # Indented, but the innermost lists (timeline points) on one line each.
    text_json = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
                       json.dumps(doc, indent=2))
    with open(path, "w") as f:
        f.write(text_json + "\n")
    print(f"wrote {path}")
    txt = os.path.join(out, "migration_live_vs_stop_and_copy.txt")
    aes = doc.get("aes_256_gcm_single_core_bytes_per_s")
    aes_s = f"{aes / 1e9:.2f} GB/s" if aes else "n/a (openssl speed failed)"
    lc = doc.get("load_client") or {}
    with open(txt, "w") as f:
        f.write(f"# {doc['command']}\n"
                f"# {doc.get('date', '?')}, {doc['cpus']} CPUs, hosts: {doc['hosts']}, workers {doc['workers']}, "
                f"git {(doc.get('git') or {}).get('commit', '?')[:12]}, constmig sha256 {doc['binary']['sha256'][:12]}\n")
        if lc:
            f.write(f"# load: {lc['script']} x {lc['processes']} processes, pipeline {lc['pipeline']}, {lc['set_ratio']:.0%} SET / "
                    f"rest GET of random populated keys, {lc['value_size']}-byte values; pre = 2 s before migrate, post = "
                    f"{lc['post_window_s']:.0f} s from 1 s after it returned, last2s = last 2 s of the clients "
                    f"({lc['tail_s']:.0f} s after it returned); 'during pop.' = live: mean ops/s while the target populated "
                    f"its heap; 'to 50%/90%' = from the first held ECALL until a 0.5 s mean is back to 50%/90% of pre\n")
        f.write(f"# AES-256-GCM (EVP, 4 KiB, one core): {aes_s}\n\n")
        f.write(text + "\n")
    print(f"wrote {txt}")
    plots(out, doc["results"], sizes, modes, sizes[-1])


def git_state():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.split("\n")
        return {"commit": head, "modified": [d[3:] for d in dirty if d.strip()]}
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="256M,1G,4G,8G")
    ap.add_argument("--modes", default="stop-and-copy,fault", help="comma list of stop-and-copy, fault, uffd")
    ap.add_argument("--skip", default="", help="MODE@SIZE,... runs not to do (recorded as skipped)")
    ap.add_argument("--skip-reason", default="", help="why --skip (goes into the JSON)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3, help="load client processes (one connection each); 3 keep "
                    "the 2-core box busy, so ops/s is CPU-bound instead of round-trip-bound (bimodal on 2 vCPUs)")
    ap.add_argument("--pipeline", type=int, default=32, help="load client: commands per round trip")
    ap.add_argument("--set-ratio", type=float, default=0.2, help="load client: share of SETs (rest GETs)")
    ap.add_argument("--pre", type=float, default=3.0, help="s of load before migrate (the last 2 s are 'pre')")
    ap.add_argument("--post-window", type=float, default=2.0, help="s of 'post' load, starting 1 s after migrate returned")
    ap.add_argument("--tail", type=float, default=8.0, help="s the client runs after migrate returned (>= 1 + post-window + 0.5)")
    ap.add_argument("--migrate-timeout", type=int, default=900, help="s before a migrate counts as hung")
    ap.add_argument("--no-load", action="store_true", help="no load client (the old stop-and-copy-only measurement)")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--no-netns", action="store_true", help="use loopback even when namespaces work")
    ap.add_argument("--from-json", metavar="PATH", help="no runs: recompute summary, table and plots from a "
                    "migration_live_vs_stop_and_copy.json of an earlier run (written to --out)")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            write_outputs(json.load(f), args.out)
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            sys.exit(f"unknown mode {m} (known: {', '.join(MODES)})")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    skip = {tuple(x.split("@", 1)[::-1]) for x in args.skip.split(",") if "@" in x}  # (size, mode)
    constmig = os.path.abspath(os.path.join(args.build, "bin", "constmig"))
    if not os.path.exists(constmig):
        sys.exit(f"{constmig} missing: build first (scripts/setup.sh)")
    with open(constmig, "rb") as f:
        binary = {"path": constmig, "sha256": hashlib.sha256(f.read()).hexdigest(),
                  "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(constmig)))}
    git = git_state()  # now: the tree may move on while this runs
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="cmbench-")
    hosts = Hosts(not args.no_netns)
    keys = {}
    for h in "ab":
        d = os.path.join(tmp, h)
        os.makedirs(os.path.join(d, "trust"))
        keys[h] = subprocess.run([constmig, "--state-dir", d, "platform", "--export-key"], check=True,
                                 capture_output=True, text=True).stdout
    for h in "ab":
        for k in "ab":
            with open(os.path.join(tmp, h, "trust", f"{k}.pem"), "w") as f:
                f.write(keys[k])
    aes = aes_gcm_single_core()
    print(f"AES-256-GCM (EVP, 4 KiB records, one core): {aes / 1e9:.2f} GB/s" if aes else "openssl speed failed")
    results = []
    failed = None
    try:
        for size_s in sizes:
            for mode in modes:
                if (size_s, mode) in skip:
                    print(f"== {size_s} {mode}: skipped ({args.skip_reason or 'no reason given'})", flush=True)
                    results.append({"size": size_s, "mode": mode, "skipped": args.skip_reason or "--skip"})
                    continue
                row = run_one(args, constmig, tmp, hosts, size_s, mode, aes)
                results.append(row)
                if "failed" in row:
                    failed = row
                    break
            if failed:
                break
    finally:
        hosts.down()
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"benchmark": "migration_live_vs_stop_and_copy", "platform": "emulated SGX", "cpus": os.cpu_count(),
           "hosts": "netns" if hosts.netns else "loopback", "workers": args.workers, "modes": modes, "sizes": sizes,
           "load_client": None if args.no_load else {"script": "bench/kv_load_client.py", "processes": args.clients,
                                                     "pipeline": args.pipeline,
                                                     "set_ratio": args.set_ratio, "value_size": 4000,
                                                     "pre_s": args.pre, "post_window_s": args.post_window, "tail_s": args.tail,
                                                     "runs_in": "host a (namespace cmbench-a)" if hosts.netns else "root namespace"},
           "aes_256_gcm_single_core_bytes_per_s": aes, "command": shlex.join(sys.argv), "binary": binary,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": git, "results": results}
    if failed:
        doc["failed"] = {"size": failed["size"], "mode": failed["mode"], "error": failed["failed"], "logs": failed["logs"]}
    write_outputs(doc, args.out)
    if failed:
        sys.exit(f"stopped: {failed['size']} {failed['mode']} failed: {failed['failed']} (logs in {failed['logs']})")


if __name__ == "__main__":
    main()
