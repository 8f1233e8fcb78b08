#!/usr/bin/python3
"""Access Tracker (compiled-in checks) vs no instrumentation vs Fault Tracker, per workload, one run.

Images: <app>_enclave.enclave.so is compiled with the Access Tracker pass; <app>_enclave_plain.enclave.so
is the same app without it. Every app with both images in <build>/bin is measured (kvstore with
3 load clients, bench/kv_load_client.py; pagecounter by its rounds counter; the workload apps by the
ops_total of their stats lines). Per workload:
  a. no migration   the instrumented and the plain image side by side: two processes with the same
                    data on host b, measured alternately (A B A B A B, --seconds each; the one not
                    measured is SIGSTOPped) so drift hits both; median ops/s of each, overhead %.
  b. migration      the plain image live-migrated with --tracker fault, the instrumented one with
                    --tracker access, same data size: downtime, population time, ops/s while the
                    target populates its heap, fault/fetch latency p50/p99 (for access: the fetch
                    OCALL's wait), post-copy requests.
  c. after commit   ops/s in the last --after-window s of the run after the migration, as a ratio
                    of the plain image's no-migration ops/s (the same host b and client path).
Also (unless --no-crossover) build/bin/bench_tracker_crossover: per-page and per-access costs of
both trackers in one process without network, and the crossover (tracker_crossover.*).

Hosts: two network namespaces (scripts/netns-hosts.sh, prefix cmat: never the cmbench hosts of
bench/migration_bench.py) when available, else loopback (said in the output). Writes
access_tracker.json, access_tracker.txt (the table), access_tracker.png.
Usage: bench/access_tracker_bench.py [--build DIR] [--workloads kvstore,pagecounter,...]
                                     [--heap 1G] [--seconds 5] [--out bench-results] [--quick]
       bench/access_tracker_bench.py --from-json OLD.json --out DIR   (table and plots again; no runs)
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import migration_bench as mb  # noqa: E402  (reused: client timeline merge, windows, process helpers)

CLIENT = os.path.join(ROOT, "bench", "kv_load_client.py")
PREFIX = "cmat"  # netns prefix (bench/migration_bench.py uses cmbench)
ALL_WORKLOADS = ["kvstore", "pagecounter", "btree", "hashjoin", "graph", "xsbench"]
CHUNK = 50000
VALUE = 4000
# From `constmig migrate`'s JSON (docs/stats.md): source object, and its nested target object.
SOURCE_FIELDS = ["downtime", "total-time", "setup-time", "pages-time", "postcopy-requests", "postcopy-pages",
                 "heap-bytes", "tracker", "granule-bytes"]
TARGET_FIELDS = ["population-time", "fault-latency-p50-us", "fault-latency-p99-us", "fault-latency-max-us", "faults",
                 "fetched-on-demand", "postcopy-requests", "postcopy-blocktime", "resume-time", "first-served-ns",
                 "population-timeline"]


class Hosts:
    """Two network-namespace hosts (prefix cmat unless given), or loopback."""

    def __init__(self, use_netns, prefix=PREFIX):
        self.prefix = prefix
        self.netns = False
        if use_netns and os.geteuid() == 0:
            r = subprocess.run([os.path.join(ROOT, "scripts/netns-hosts.sh"), "up", "--prefix", self.prefix],
                               capture_output=True, text=True)
            self.netns = r.returncode == 0
            if not self.netns:
                print(f"netns unavailable ({r.stderr.strip()[:200]}): falling back to loopback")
        self.addr = {"a": "10.77.0.1", "b": "10.77.0.2"} if self.netns else {"a": "127.0.0.1", "b": "127.0.0.1"}
        print(f"hosts: {'network namespaces ' + self.prefix + '-a/' + self.prefix + '-b over veth' if self.netns else 'loopback'}")

    def cmd(self, host, argv):
        return ["ip", "netns", "exec", f"{self.prefix}-{host}"] + argv if self.netns else argv

    def down(self):
        if self.netns:
            subprocess.run([os.path.join(ROOT, "scripts/netns-hosts.sh"), "down", "--prefix", self.prefix],
                           capture_output=True)


class Proc:
    """A constmig process whose output (stdout + stderr) is read by a thread: every line is kept with
    the time it arrived (stats lines carry no time) and copied to a log file."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        self.lines = []  # (unix time, text)
        self.lock = threading.Lock()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace", bufsize=1)
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.p.stdout:
                t = time.time()
                with self.lock:
                    self.lines.append((t, line.rstrip("\n")))
                log.write(f"{t:.3f} {line}")
                log.flush()

    def has(self, text):
        with self.lock:
            return any(text in s for _, s in self.lines)

    def stats_lines(self, t0=0, t1=1e18):
        """(time, stats JSON) of the `stats {...}` lines that arrived in [t0, t1]."""
        out = []
        with self.lock:
            lines = list(self.lines)
        for t, s in lines:
            if t0 <= t <= t1 and s.startswith("stats "):
                try:
                    out.append((t, json.loads(s[6:])))
                except ValueError:
                    pass
        return out

    def line_json(self, prefix):
        with self.lock:
            lines = list(self.lines)
        for _, s in lines:
            if s.startswith(prefix):
                try:
                    return json.loads(s[len(prefix):])
                except ValueError:
                    return None
        return None

    def pause(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGSTOP)

    def cont(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)

    def stop(self):
        self.cont()
        mb.stop_proc(self.p)
        self.th.join(timeout=5)


class RunFailed(Exception):
    pass


def status(constmig, ctl, timeout=60):
    r = subprocess.run([constmig, "status", "--control", ctl], capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def counter_of(app):
    """The stats-line counter whose rate is the app's throughput."""
    if app == "pagecounter":
        return "rounds"
    return "ops_total"


def rate_from_stats(lines, key, t0, t1):
    """Mean rate of a stats counter between the first and the last stats line in [t0, t1]."""
    pts = [(t, j.get(key)) for t, j in lines if t0 <= t <= t1 and isinstance(j.get(key), (int, float))]
    if len(pts) < 2 or pts[-1][0] - pts[0][0] < 0.5:
        return None
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


class Bench:
    def __init__(self, args, constmig, tmp, hosts):
        self.a, self.constmig, self.tmp, self.hosts = args, constmig, tmp, hosts
        self.bindir = os.path.dirname(constmig)
        self.nrun = 0

    def image(self, app, plain):
        return os.path.join(self.bindir, f"{app}_enclave{'_plain' if plain else ''}.enclave.so")

    def app_args(self, verb, app, size, port, host):
        """`constmig run/receive` options for the app at this data size (a target takes the data
        size from the source's state: only the heap limit)."""
        limit = int(size * 1.4) + (64 << 20)
        if app == "kvstore":
            return ["--bind", self.hosts.addr[host], "--port", str(port), "--max-memory", str(limit)]
        if verb == "receive":
            return ["--max-memory", str(limit)]
        if app == "pagecounter":
            return ["--pages", str(max(1, size >> 20)), "--max-memory", str(limit)]
        return ["--data", str(size), "--max-memory", str(limit)]

    def start(self, host, verb, app, plain, size, port, name, extra=()):
        self.nrun += 1
        state = os.path.join(self.tmp, host)
        ctl = os.path.join(self.tmp, f"{name}-{self.nrun}.ctl")
        argv = [self.constmig, "--state-dir", state, verb, "--app", app, "--image", self.image(app, plain),
                "--control", ctl, "--stats-interval", str(self.a.stats_interval)] + self.app_args(verb, app, size, port, host) \
            + list(extra)
        p = Proc(self.hosts.cmd(host, argv), os.path.join(self.tmp, f"{name}-{self.nrun}.log"))
        p.ctl = ctl
        p.name = name
        return p

    def wait_ready(self, p, app, timeout):
        """Until the app serves: control socket up and, for workloads, the data built (ops flowing)."""
        if not mb.wait_for(lambda: os.path.exists(p.ctl) or p.p.poll() is not None, timeout):
            raise RunFailed(f"{p.name}: no control socket within {timeout} s")
        if p.p.poll() is not None:
            raise RunFailed(f"{p.name} exited: {mb.tail(p.log_path, 20)}")
        if app in ("kvstore",):
            return
        key = counter_of(app)
        ok = mb.wait_for(lambda: any((j.get(key) or 0) > 0 for _, j in p.stats_lines()) or p.p.poll() is not None,
                         timeout)
        if not ok or p.p.poll() is not None:
            raise RunFailed(f"{p.name}: no {key} within {timeout} s: {mb.tail(p.log_path, 20)}")

    def fill_kvstore(self, host, port, size):
        count = size // (VALUE + 96)
        for first in range(0, count, CHUNK):
            n = min(CHUNK, count - first)
            r = mb.kv(self.hosts, host, port, "DEBUG", "POPULATE", str(n), f"k{first}", str(VALUE))
            if r != "OK":
                raise RunFailed(f"populate failed: {r}")
        return count

    def clients(self, src, dst, keys, tag, duration=0):
        out = []
        for i in range(self.a.clients):
            lp = os.path.join(self.tmp, f"{tag}-client{i}.log")
            argv = [sys.executable, CLIENT, "--source", src, "--target", dst, "--keys", str(keys), "--chunk", str(CHUNK),
                    "--value-size", str(VALUE), "--pipeline", str(self.a.pipeline), "--set-ratio", str(self.a.set_ratio),
                    "--interval", "0.1", "--seed", str(i + 1)]
            if duration:
                argv += ["--duration", str(duration)]
            c = subprocess.Popen(self.hosts.cmd("a", argv), stdout=open(lp, "w"), stderr=subprocess.DEVNULL)
            c.log_path = lp
            out.append(c)
        return out

    # ---- a. no migration: instrumented vs plain, interleaved ----
    def no_migration(self, app, size):
        a = self.a
        procs = {}
        res = {"windows": []}
        try:
            ports = {"instrumented": 6500, "plain": 6501}
            for variant in ("instrumented", "plain"):
                p = self.start("b", "run", app, variant == "plain", size, ports[variant], f"nomig-{app}-{variant}")
                procs[variant] = p
                self.wait_ready(p, app, a.ready_timeout)
                if app == "kvstore":
                    res["keys"] = self.fill_kvstore("b", ports[variant], size)
                p.pause()  # until its turn
            for rnd in range(a.rounds):
                for variant in ("instrumented", "plain") if rnd % 2 == 0 else ("plain", "instrumented"):
                    p = procs[variant]
                    p.cont()
                    t0 = time.time()
                    if app == "kvstore":
                        addr = f"{self.hosts.addr['b']}:{ports[variant]}"
                        cs = self.clients(addr, addr, res["keys"], f"nomig-{variant}-{rnd}", duration=a.seconds + a.settle)
                        for c in cs:
                            c.wait(timeout=a.seconds + a.settle + 30)
                        samples, _, _ = mb.read_clients([c.log_path for c in cs])
                        w0, w1 = t0 + a.settle, t0 + a.settle + a.seconds
                        ops = [s["ops"] for s in samples if w0 < s["t"] <= w1]
                        rate = sum(ops) / (len(ops) * 0.1) if ops else None
                    else:
                        time.sleep(a.settle + a.seconds)
                        rate = rate_from_stats(p.stats_lines(), counter_of(app), t0 + a.settle, time.time())
                    p.pause()
                    res["windows"].append({"round": rnd, "image": variant, "ops_per_s": rate,
                                           "start": round(t0, 3), "seconds": a.seconds})
                    print(f"   no migration, round {rnd + 1}/{a.rounds}, {variant:12s}: "
                          f"{'n/a' if rate is None else f'{rate:.1f}'} ops/s", flush=True)
            for variant in ("instrumented", "plain"):
                v = [w["ops_per_s"] for w in res["windows"] if w["image"] == variant and w["ops_per_s"] is not None]
                res[f"{variant}_ops_per_s"] = v
                res[f"{variant}_median"] = statistics.median(v) if v else None
            if res["instrumented_median"] and res["plain_median"]:
                res["overhead_pct"] = 100.0 * (1.0 - res["instrumented_median"] / res["plain_median"])
                # Per-round pairs (drift within a round is smallest).
                pairs = []
                for rnd in range(a.rounds):
                    w = {x["image"]: x["ops_per_s"] for x in res["windows"] if x["round"] == rnd}
                    if w.get("instrumented") and w.get("plain"):
                        pairs.append(100.0 * (1.0 - w["instrumented"] / w["plain"]))
                res["overhead_pct_per_round"] = pairs
            return res
        finally:
            for p in procs.values():
                p.stop()

    # ---- b/c. migration: plain + fault, instrumented + access ----
    def migration(self, app, size, tracker):
        a = self.a
        plain = tracker == "fault"
        sport, tport, mport = 6510, 6511, 7510
        src = dst = None
        cs = []
        row = {"tracker": tracker, "image": "plain" if plain else "instrumented"}
        try:
            src = self.start("a", "run", app, plain, size, sport, f"mig-{app}-{tracker}-src")
            self.wait_ready(src, app, a.ready_timeout)
            if app == "kvstore":
                row["keys"] = self.fill_kvstore("a", sport, size)
            st = status(self.constmig, src.ctl)
            row["heap_in_use"] = (st.get("heap") or {}).get("in_use")
            dst = self.start("b", "receive", app, plain, size, tport, f"mig-{app}-{tracker}-dst",
                             ["--listen", f"{self.hosts.addr['b']}:{mport}", "--workers", str(a.workers)])
            if not mb.wait_for(lambda: dst.has("waiting for an incoming") or dst.p.poll() is not None, 60) \
                    or dst.p.poll() is not None:
                raise RunFailed(f"target did not start: {mb.tail(dst.log_path, 20)}")
            if app == "kvstore":
                cs = self.clients(f"{self.hosts.addr['a']}:{sport}", f"{self.hosts.addr['b']}:{tport}", row["keys"],
                                  f"mig-{tracker}")
            time.sleep(a.pre)
            t_mig = time.time()
            r = subprocess.run([self.constmig, "migrate", "--control", src.ctl, "--to", f"{self.hosts.addr['b']}:{mport}",
                                "--workers", str(a.workers), "--mode", "constmig", "--tracker", tracker],
                               capture_output=True, text=True, timeout=a.migrate_timeout)
            t_ret = time.time()
            try:
                m = json.loads(r.stdout)
            except ValueError:
                raise RunFailed(f"migrate rc {r.returncode}: {r.stderr[-2000:]}")
            if m.get("status") != "completed":
                raise RunFailed(f"migration status {m.get('status')}: {m.get('error')}")
            time.sleep(a.tail)
            t_end = time.time()
            for c in cs:
                c.send_signal(signal.SIGTERM)
            for c in cs:
                mb.stop_proc(c, signal.SIGTERM, 10)
            tgt = dict(m.get("target", {}))
            logged = dst.line_json("migration received: ") or {}
            for k in TARGET_FIELDS:
                if k not in tgt and k in logged:
                    tgt[k] = logged[k]
            row.update({k: m.get(k) for k in SOURCE_FIELDS})
            row["target"] = {k: tgt.get(k) for k in TARGET_FIELDS}
            row["migrate_started"], row["migrate_returned"], row["end"] = t_mig, t_ret, t_end
            fs = tgt.get("first-served-ns")
            pop = tgt.get("population-time")
            row["first_served"] = fs / 1e9 if fs else None
            p0 = row["first_served"]
            p1 = p0 + pop / 1000.0 if p0 and pop is not None else None
            aw = a.after_window
            if app == "kvstore":
                samples, events, summaries = mb.read_clients([c.log_path for c in cs])
                row["pre_ops_per_s"] = mb.window_rate(samples, t_mig - min(2.0, a.pre - 0.5), t_mig)
                row["during_population_ops_per_s"] = (
                    sum(s["ops"] for s in samples if p0 < s["t"] <= p1) / (p1 - p0) if p1 and p1 - p0 >= 0.05 else None)
                last = samples[-1]["t"] if samples else t_end
                row["after_ops_per_s"] = mb.window_rate(samples, last - aw, last)
                row["after_window_s_after_return"] = [round(last - aw - t_ret, 2), round(last - t_ret, 2)]
                row["client"] = {k: sum(x.get(k, 0) for x in summaries)
                                 for k in ("ops", "get_misses", "bad_values", "errors_target")}
                row["client"]["switched"] = sum(1 for x in summaries if x.get("switch"))
                row["client"]["client-gap-ms"] = max((x["client-gap-ms"] for x in summaries), default=None)
                row["timeline"] = [[round(s["t"] - t_mig, 2), s["ops"] * 10] for s in samples]
                row["dbsize_verified"] = mb.kv(self.hosts, "b", tport, "DBSIZE") == str(row["keys"])
            else:
                key = counter_of(app)
                row["pre_ops_per_s"] = rate_from_stats(src.stats_lines(), key, t_mig - min(2.0, a.pre - 0.5) - a.stats_interval,
                                                       t_mig)
                row["after_ops_per_s"] = rate_from_stats(dst.stats_lines(), key, t_end - aw, t_end)
                row["after_window_s_after_return"] = [round(t_end - aw - t_ret, 2), round(t_end - t_ret, 2)]
                sl = src.stats_lines(0, t_mig)
                dl = dst.stats_lines()
                if sl and dl and isinstance(sl[-1][1].get(key), (int, float)) and isinstance(dl[0][1].get(key), (int, float)):
                    # No stats lines while migrating: the mean from the source's last to the target's first.
                    row["across_migration_ops_per_s"] = (dl[0][1][key] - sl[-1][1][key]) / (dl[0][0] - sl[-1][0])
                    row["across_migration_window_s"] = [round(sl[-1][0] - t_mig, 2), round(dl[0][0] - t_mig, 2)]
                if app != "pagecounter":
                    # The target's own 100 ms timeline (t_ms since its start): aligned on the status
                    # call's return time (its last sample is < 0.1 s old). Verification is done by now.
                    t_q = time.time()
                    st = status(self.constmig, dst.ctl)
                    t_q = (t_q + time.time()) / 2
                    aps = st.get("app_stats") or {}
                    tl = aps.get("timeline") or []
                    if tl:
                        off = t_q - 0.05 - tl[-1][0] / 1000.0  # the last sample is 0-0.1 s old
                        row["timeline"] = [[round(t / 1000.0 + off - t_mig, 2), r] for t, r in tl]
                        if p1:
                            # Each sample is the rate over the 100 ms before it: weigh by overlap.
                            num = den = 0.0
                            prev = None
                            for t, r in tl:
                                te = t / 1000.0 + off
                                ts = te - 0.1 if prev is None else prev
                                prev = te
                                ov = min(te, p1) - max(ts, p0)
                                if ov > 0:
                                    num += r * ov
                                    den += ov
                            row["during_population_ops_per_s"] = num / den if den > 0 else None
                            row["during_population_covered_s"] = round(den, 3)
                    row["verified"] = aps.get("verified")
                    row["verification"] = aps.get("verification")
                    # Verification after commit (a quiescing one pauses the load): when it ran.
                    done = [t for t, j in dl if (j.get("verification") or {}).get("state") == "done"]
                    row["verification_done_after_return_s"] = round(done[0] - t_ret, 2) if done else None
                last = dl[-1][1] if dl else {}
                row["errors"] = last.get("errors") if app != "pagecounter" else (last.get("last_error") or None)
            print(f"   {tracker:6s} ({row['image']} image): downtime {row['downtime']:.1f} ms, population "
                  f"{(pop or 0):.0f} ms, requests {row['postcopy-requests']}, latency p50/p99 "
                  f"{tgt.get('fault-latency-p50-us') or 0:.0f}/{tgt.get('fault-latency-p99-us') or 0:.0f} us; ops/s pre "
                  f"{fmt(row.get('pre_ops_per_s'))}, during population {fmt(row.get('during_population_ops_per_s'))}, "
                  f"after {fmt(row.get('after_ops_per_s'))}", flush=True)
            return row
        except (RunFailed, subprocess.TimeoutExpired) as e:
            keep = os.path.join(self.a.out, f"failed-{app}-{tracker}")
            os.makedirs(keep, exist_ok=True)
            for p in (src, dst):
                if p is not None:
                    shutil.copy(p.log_path, keep)
            row["failed"] = str(e)
            row["logs"] = keep
            print(f"   {tracker}: FAILED: {e} (logs in {keep})", flush=True)
            return row
        finally:
            for c in cs:
                mb.stop_proc(c, signal.SIGTERM, 10)
            for p in (dst, src):
                if p is not None:
                    p.stop()


def aggregate(runs):
    """Medians over a tracker's migration runs (all runs kept under "runs")."""
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return {"failed": runs[0]["failed"] if runs else "not run", "runs": runs}

    def med(vals):
        v = [x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
        return statistics.median(v) if v else None
    agg = {k: med([r.get(k) for r in ok]) for k in ("downtime", "postcopy-requests", "pre_ops_per_s",
                                                   "during_population_ops_per_s", "after_ops_per_s",
                                                   "across_migration_ops_per_s")}
    agg["target"] = {k: med([(r.get("target") or {}).get(k) for r in ok])
                     for k in ("population-time", "fault-latency-p50-us", "fault-latency-p99-us", "fetched-on-demand")}
    agg["tracker"], agg["image"] = ok[0]["tracker"], ok[0]["image"]
    agg["runs_ok"], agg["runs_failed"] = len(ok), len(runs) - len(ok)
    agg["runs"] = runs
    return agg


def fmt(v, f="{:.0f}"):
    return "n/a" if v is None else f.format(v)


def summarize(doc):
    out = []
    for w in doc["workloads"]:
        e = {"workload": w["workload"], "unit": w.get("unit")}
        nm = w.get("no_migration") or {}
        base = nm.get("plain_median")
        e["plain_ops_per_s"], e["instrumented_ops_per_s"] = base, nm.get("instrumented_median")
        e["overhead_pct"] = nm.get("overhead_pct")
        for t in ("fault", "access"):
            r = (w.get("migration") or {}).get(t) or {}
            if not r or r.get("runs_ok") is None and "failed" in r:
                e[t] = {"failed": r.get("failed", "not run")}
                continue
            tg = r.get("target") or {}
            d = {"runs": r.get("runs_ok"), "downtime_ms": r.get("downtime"), "population_ms": tg.get("population-time"),
                 "latency_p50_us": tg.get("fault-latency-p50-us"), "latency_p99_us": tg.get("fault-latency-p99-us"),
                 "postcopy_requests": r.get("postcopy-requests"),
                 "pre_ops_per_s": r.get("pre_ops_per_s"),
                 "during_population_ops_per_s": r.get("during_population_ops_per_s"),
                 "after_ops_per_s": r.get("after_ops_per_s")}
            for k, v in (("during_over_plain", d["during_population_ops_per_s"]), ("after_over_plain", d["after_ops_per_s"])):
                d[k] = v / base if v is not None and base else None
            if r.get("across_migration_ops_per_s") is not None and base:
                d["across_migration_over_plain"] = r["across_migration_ops_per_s"] / base
            e[t] = d
        out.append(e)
    return out


def table(summary, doc):
    head = ["workload", "plain ops/s", "instr. ops/s", "overhead", "tracker", "downtime ms", "population ms",
            "p50/p99 us", "requests", "during pop./plain", "after/plain"]
    rows = []
    for e in summary:
        first = True
        for t in ("fault", "access"):
            d = e.get(t) or {}
            lead = [e["workload"], fmt(e["plain_ops_per_s"]), fmt(e["instrumented_ops_per_s"]),
                    fmt(e["overhead_pct"], "{:+.2f}%")] if first else ["", "", "", ""]
            first = False
            if "failed" in d:
                rows.append(lead + [t, "FAILED: " + str(d["failed"])[:60]] + [""] * 5)
                continue
            dur = d.get("during_over_plain")
            dur_s = fmt(dur, "{:.3f}") if dur is not None else (
                fmt(d.get("across_migration_over_plain"), "({:.3f})") if d.get("across_migration_over_plain") is not None
                else "n/a")
            rows.append(lead + [t, fmt(d["downtime_ms"], "{:.1f}"), fmt(d["population_ms"]),
                                f"{fmt(d['latency_p50_us'])}/{fmt(d['latency_p99_us'])}", fmt(d["postcopy_requests"]),
                                dur_s, fmt(d.get("after_over_plain"), "{:.3f}")])
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).rjust(n) for x, n in zip(r, w)) for r in [head] + rows]
    lines.append("")
    lines.append("overhead = 1 - instrumented / plain median ops/s, no migration (goal <= 5%); during pop./plain = "
                 "ops/s while the target populated its heap / plain no-migration ops/s ('(x)' = pagecounter: mean "
                 "from the source's last stats line to the target's first, no samples in between); after/plain = "
                 f"last {doc['config']['after_window_s']:.0f} s of the run after the migration / plain no-migration "
                 "ops/s (goal >= 0.98 for access); p50/p99 = fault-latency (fault: SIGSEGV to granule open; "
                 "access: the fetch OCALL's wait).")
    for e in summary:
        fa, ac = (e.get("fault") or {}).get("after_ops_per_s"), (e.get("access") or {}).get("after_ops_per_s")
        if fa and ac:
            e["after_access_over_fault"] = ac / fa
            lines.append(f"{e['workload']}: after commit, access (instrumented image) / fault (plain image) = {ac / fa:.3f}")
        for t in ("fault", "access"):
            d = e.get(t) or {}
            if d.get("after_over_plain") is not None and t == "access":
                lines.append(f"{e['workload']}: access after commit {d['after_over_plain']:.3f} of plain "
                             f"({'meets' if d['after_over_plain'] >= 0.98 else 'BELOW'} the 0.98 goal); overhead "
                             f"{fmt(e['overhead_pct'], '{:+.2f}%')} ({'meets' if (e['overhead_pct'] or 0) <= 5 else 'ABOVE'} "
                             f"the 5% goal)")
    return "\n".join(lines)


def label_bars(ax, bars, f):
    try:
        ax.bar_label(bars, labels=[f.format(b.get_height()) for b in bars], fontsize=7)
    except AttributeError:  # matplotlib < 3.4
        pass


def plots(out, doc, summary):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    names = [e["workload"] for e in summary]
    if not names:
        return
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.5))
    x = list(range(len(names)))
    ov = [e["overhead_pct"] or 0 for e in summary]
    b = axs[0].bar(x, ov, color=["tab:green" if v <= 5 else "tab:red" for v in ov])
    label_bars(axs[0], b, "{:+.1f}%")
    axs[0].axhline(5, color="k", ls="--", lw=1, label="goal 5%")
    axs[0].axhline(0, color="k", lw=0.5)
    axs[0].set_xticks(x)
    axs[0].set_xticklabels(names, rotation=20)
    axs[0].set_ylabel("throughput overhead % (instrumented vs plain)")
    axs[0].set_title("no migration: Access Tracker instrumentation", fontsize=10)
    axs[0].legend(fontsize=8)
    for ax, key, title, goal in ((axs[1], "during_over_plain", "during population / plain no-migration", None),
                                 (axs[2], "after_over_plain", "after commit / plain no-migration", 0.98)):
        for i, (t, c) in enumerate((("fault", "tab:blue"), ("access", "tab:orange"))):
            vals = []
            for e in summary:
                d = e.get(t) or {}
                v = d.get(key)
                if v is None and key == "during_over_plain":
                    v = d.get("across_migration_over_plain")
                vals.append(v or 0)
            b = ax.bar([xx + (i - 0.5) * 0.38 for xx in x], vals, width=0.38, color=c,
                       label=f"{t} ({'plain' if t == 'fault' else 'instrumented'} image)")
            label_bars(ax, b, "{:.2f}")
        if goal:
            ax.axhline(goal, color="k", ls="--", lw=1, label=f"goal {goal}")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=20)
        ax.set_ylabel("ops/s ratio")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right" if key == "during_over_plain" else "lower left")
    fig.suptitle(f"Access Tracker vs plain vs Fault Tracker ({doc['cpus']} CPUs, emulated SGX, {doc['hosts']}, "
                 f"{doc['date']})", fontsize=10)
    fig.tight_layout()
    png = os.path.join(out, "access_tracker.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"wrote {png}")


def crossover_outputs(out, path):
    """tracker_crossover.png from bench_tracker_crossover's JSON: extra ns per newly touched page vs K."""
    try:
        with open(path) as f:
            x = json.load(f)
    except (OSError, ValueError) as e:
        print(f"no crossover plot: {e}")
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return x
    modes = list(x["modes"])
    fig, axs = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4.3), squeeze=False)
    for ax, m in zip(axs[0], modes):
        rows = x["modes"][m]["rows"]
        ks = [r["k"] for r in rows]
        n = x["config"]["pages"]

        def per_page(v):
            return [r["median_ns"][v] / n for r in rows]
        # Whole time per page (loop included): the cheaper tracker is the lower line. (Extra
        # time over the plain loop can be negative: a fetch's copy leaves the page in the cache.)
        ax.plot(ks, per_page("fault"), "o-", color="tab:blue", label="Fault Tracker, during migration")
        ax.plot(ks, per_page("at-active"), "s-", color="tab:orange", label="Access Tracker, during migration")
        ax.plot(ks, per_page("at-committed"), "^:", color="tab:orange", alpha=0.6, label="Access Tracker, after commit")
        ax.plot(ks, per_page("base"), "x--", color="gray", alpha=0.7, label="plain loop, no tracker")
        k = x["modes"][m]["measured"].get("crossover_k")
        if k:
            ax.axvline(k, color="k", ls="--", lw=1, label=f"crossover K = {k:.0f}")
        ax.set_xscale("log")
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks], fontsize=7, rotation=45)
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("K: accesses per newly touched page")
        ax.set_ylabel("ns per newly touched page (loop included)")
        ax.set_title(f"{m}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Access Tracker vs Fault Tracker per newly touched page, one process, no network "
                 f"({x['config']['pages']} pages, {x['config']['hardware_threads']} CPUs)", fontsize=10)
    fig.tight_layout()
    png = os.path.join(out, "tracker_crossover.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"wrote {png}")
    return x


def write_outputs(doc, out, src_dir=None):
    os.makedirs(out, exist_ok=True)
    doc["summary"] = summary = summarize(doc)
    doc["table"] = text = table(summary, doc)
    print("\n" + text)
    path = os.path.join(out, "access_tracker.json")
    text_json = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
                       json.dumps(doc, indent=2))
    with open(path, "w") as f:
        f.write(text_json + "\n")
    print(f"wrote {path}")
    c = doc["config"]
    with open(os.path.join(out, "access_tracker.txt"), "w") as f:
        f.write(f"# {doc['command']}\n"
                f"# {doc['date']}, {doc['cpus']} CPUs, hosts: {doc['hosts']}, git {(doc.get('git') or {}).get('commit', '?')[:12]}, "
                f"constmig sha256 {doc['binary']['sha256'][:12]}; load average before: {doc.get('loadavg_before')}\n"
                f"# data per workload {c['heap']}; no migration: {c['rounds']} rounds x {c['seconds']:.0f} s per image "
                f"(after {c['settle_s']:.1f} s settling), both processes on host b, the idle one SIGSTOPped; migration: "
                f"plain image + --tracker fault, instrumented + --tracker access, {c.get('migration_rounds', 1)} run(s) "
                f"each (medians), {c['pre_s']:.0f} s load before, "
                f"{c['tail_s']:.0f} s after; kvstore load: {c['clients']} x bench/kv_load_client.py in host a "
                f"(pipeline {c['pipeline']}, {c['set_ratio']:.0%} SET); pagecounter ops = rounds (pc_step over all "
                f"pages + 1024 touches + 10 ms sleep; every 16th round also pc_check, a byte-by-byte scan of every page); workloads ops = ops_total of their stats lines\n")
        if doc.get("note"):
            f.write(f"# NOTE: {doc['note']}\n")
        for s in doc.get("skipped", []):
            f.write(f"# skipped: {s['workload']} ({s['reason']})\n")
        f.write("\n" + text + "\n")
    print(f"wrote {os.path.join(out, 'access_tracker.txt')}")
    plots(out, doc, summary)
    xp = os.path.join(out, "tracker_crossover.json")
    if not os.path.exists(xp) and src_dir:
        xp = os.path.join(src_dir, "tracker_crossover.json")
    if os.path.exists(xp):
        crossover_outputs(out, xp)


def setup_trust(constmig, tmp):
    """Platform state dirs tmp/a and tmp/b (host a, host b), each trusting both keys."""
    for h in "ab":
        os.makedirs(os.path.join(tmp, h, "trust"))
    keys = {h: subprocess.run([constmig, "--state-dir", os.path.join(tmp, h), "platform", "--export-key"], check=True,
                              capture_output=True, text=True).stdout for h in "ab"}
    for h in "ab":
        for k in "ab":
            with open(os.path.join(tmp, h, "trust", f"{k}.pem"), "w") as f:
                f.write(keys[k])


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_build = "build-ci" if os.path.exists(os.path.join(ROOT, "build-ci", "bin", "constmig")) else "build"
    ap.add_argument("--build", default=default_build)
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                    help="comma list; apps without both images (<app>_enclave / _plain) are skipped, said so")
    ap.add_argument("--heap", default="1G", help="data per workload: kvstore's store, pagecounter's pages, "
                    "the workloads' --data (source and target hold it both, and (a) runs two processes)")
    ap.add_argument("--seconds", type=float, default=5.0, help="no migration: seconds per measured window")
    ap.add_argument("--rounds", type=int, default=3, help="no migration: rounds of (instrumented, plain)")
    ap.add_argument("--settle", type=float, default=1.0, help="no migration: seconds after SIGCONT before measuring")
    ap.add_argument("--pre", type=float, default=3.0, help="migration: seconds of load before migrate")
    ap.add_argument("--tail", type=float, default=10.0, help="migration: seconds the run goes on after migrate returned")
    ap.add_argument("--after-window", type=float, default=3.0, help="after commit: the last N s of --tail")
    ap.add_argument("--migration-rounds", type=int, default=2, help="migrations per tracker (alternating "
                    "fault, access / access, fault); medians reported")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--pipeline", type=int, default=32)
    ap.add_argument("--set-ratio", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stats-interval", type=float, default=0.5, help="constmig --stats-interval (rates of non-kvstore apps)")
    ap.add_argument("--ready-timeout", type=int, default=300, help="s for an app to build its data")
    ap.add_argument("--migrate-timeout", type=int, default=600)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--no-netns", action="store_true")
    ap.add_argument("--no-crossover", action="store_true", help="do not run bench_tracker_crossover")
    ap.add_argument("--no-migration", action="store_true", help="only (a), no migrations (e.g. an A/A check of the "
                    "noise floor with a build whose _plain image is a copy of the instrumented one)")
    ap.add_argument("--crossover-args", default="", help="extra arguments for bench_tracker_crossover")
    ap.add_argument("--note", default="", help="a note for the .txt and JSON (e.g. the box was loaded)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 64 MiB, 2 rounds x 1.5 s, short tails")
    ap.add_argument("--from-json", metavar="PATH", help="no runs: table and plots again from an access_tracker.json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            write_outputs(json.load(f), args.out, os.path.dirname(os.path.abspath(args.from_json)))
        return
    if args.quick:
        args.heap, args.seconds, args.rounds, args.settle = "64M", 1.5, 2, 0.5
        args.pre, args.tail, args.after_window, args.migration_rounds = 1.5, 3.5, 1.5, 1
    size = mb.parse_size(args.heap)
    constmig = os.path.abspath(os.path.join(args.build, "bin", "constmig"))
    if not os.path.exists(constmig):
        sys.exit(f"{constmig} missing: build first")
    with open(constmig, "rb") as f:
        binary = {"path": constmig, "sha256": hashlib.sha256(f.read()).hexdigest()}
    git = mb.git_state()
    os.makedirs(args.out, exist_ok=True)
    load_before = loadavg()
    print(f"load average (1 min) before: {load_before}")
    bindir = os.path.dirname(constmig)
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    todo, skipped = [], []
    for w in wanted:
        missing = [p for p in (f"{w}_enclave.enclave.so", f"{w}_enclave_plain.enclave.so")
                   if not os.path.exists(os.path.join(bindir, p))]
        if missing:
            skipped.append({"workload": w, "reason": f"no {', '.join(missing)} in {bindir}"})
            print(f"== {w}: skipped (no {', '.join(missing)})")
        else:
            todo.append(w)
    crossover = None
    if not args.no_crossover:
        xbin = os.path.join(bindir, "bench_tracker_crossover")
        if os.path.exists(xbin):
            print("== crossover micro-benchmark (bench_tracker_crossover)", flush=True)
            cmd = [xbin, "--out", args.out] + (["--quick"] if args.quick else []) + shlex.split(args.crossover_args)
            r = subprocess.run(cmd)
            crossover = {"command": shlex.join(cmd), "rc": r.returncode}
        else:
            print(f"no {xbin}: crossover skipped")
    tmp = tempfile.mkdtemp(prefix="cmat-")
    hosts = Hosts(not args.no_netns)
    setup_trust(constmig, tmp)
    bench = Bench(args, constmig, tmp, hosts)
    results = []
    try:
        for w in todo:
            print(f"== {w}: {args.heap} of data", flush=True)
            e = {"workload": w, "unit": {"kvstore": "client ops/s (GET+SET)", "pagecounter": "rounds/s"}.get(w, "ops/s")}
            try:
                e["no_migration"] = bench.no_migration(w, size)
            except (RunFailed, subprocess.TimeoutExpired) as ex:
                e["no_migration"] = {"failed": str(ex)}
                print(f"   no migration: FAILED: {ex}", flush=True)
            runs = {"fault": [], "access": []}
            for rnd in range(0 if args.no_migration else args.migration_rounds):
                for t in ("fault", "access") if rnd % 2 == 0 else ("access", "fault"):
                    runs[t].append(bench.migration(w, size, t))
            e["migration"] = {t: aggregate(runs[t]) for t in runs}
            results.append(e)
    finally:
        hosts.down()
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"benchmark": "access_tracker", "platform": "emulated SGX", "cpus": os.cpu_count(),
           "hosts": "netns" if hosts.netns else "loopback", "command": shlex.join(sys.argv), "binary": binary, "git": git,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_before": load_before,
           "note": args.note or None,
           "config": {"heap": args.heap, "heap_bytes": size, "seconds": args.seconds, "rounds": args.rounds,
                      "settle_s": args.settle, "pre_s": args.pre, "tail_s": args.tail, "after_window_s": args.after_window,
                      "clients": args.clients, "pipeline": args.pipeline, "set_ratio": args.set_ratio,
                      "workers": args.workers, "stats_interval_s": args.stats_interval, "quick": args.quick,
                      "migration_rounds": args.migration_rounds},
           "crossover": crossover, "skipped": skipped, "workloads": results}
    write_outputs(doc, args.out)


if __name__ == "__main__":
    main()
