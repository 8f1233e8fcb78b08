#!/usr/bin/python3
"""The workload-suite evaluation (issue #7): every workload x {stop-and-copy, live+fault,
live+access} x heap size, one command; or a worker sweep (--worker-sweep).

Workloads: btree, hashjoin, graph, xsbench (--workloads), plus sqlite when the constmig binary's
app registry lists it. Each is a `constmig run --app W --data SIZE` with its built-in closed-loop
load (ops/s every 100 ms in `constmig status`) that verifies its own data after every migration.

Per workload and size (default, "chain"): the data is built ONCE on host a and the same data
migrates back and forth: a->b stop-and-copy, b->a live+fault, a->b live+access (the order of
--modes). Every hop waits until the target's after-migration verification is done (the whole heap
has arrived), so the next hop starts from a settled process. --fresh: a fresh source per run
instead (the data is built again for every mode: slower).

Recorded per run: downtime, its reduction vs stop-and-copy (same workload and size), total
time, bytes transferred, on-demand pages (postcopy-pages; the target's fetched-on-demand
granules), fault latency p99, post-migration ops/s as a ratio of pre-migration (the app's own
timeline: the --window s before `migrate` on the source vs the last --window s of the tail on the
target, after its verification), the verification result (a failed one fails the run and the
command's exit status).

Hosts: the two network-namespace hosts of scripts/netns-hosts.sh (prefix --netns-prefix), else
loopback (said in the output); --rate 1gbit|10gbit shapes both veth ends with tc tbf. Before each
size the memory the two processes will hold is touched once (--no-warm to skip); a size whose two
heaps do not fit in MemAvailable is refused before anything runs.

Writes to --out: workload_eval.json (command line, git commit, machine, load average before, date,
every run), workload_eval.md (tables, the paper's 77-96% next to ours), workload_eval_downtime.png
(downtime vs heap size per mode, one panel per workload), workload_eval_timeline.png (ops/s around
each migration); with --worker-sweep: worker_sweep.{json,md,png}.
Usage: bench/workload_eval.py [--build build] [--sizes 256M,1G,4G,8G] [--workloads btree,...]
                              [--modes stop-and-copy,fault,access] [--rate none] [--out DIR]
       bench/workload_eval.py --quick --out DIR                 (32 MiB, every workload and mode)
       bench/workload_eval.py --worker-sweep 1,2,4,8,16 --workloads btree --sizes 1G --out DIR
       bench/workload_eval.py --from-json DIR/workload_eval.json --out DIR   (tables, plots again)
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import access_tracker_bench as atb  # noqa: E402  (hosts, process capture, status, trust)
import migration_bench as mb  # noqa: E402  (sizes, waits, git state, memory)

WORKLOADS = ["btree", "hashjoin", "graph", "xsbench"]
OPTIONAL = ["sqlite"]  # included automatically when the binary's app registry has it
MODES = {"stop-and-copy": ["--mode", "stop-and-copy"],
         "fault": ["--mode", "constmig", "--tracker", "fault"],
         "access": ["--mode", "constmig", "--tracker", "access"]}
LABEL = {"stop-and-copy": "stop-and-copy", "fault": "live+fault", "access": "live+access"}
PAPER = "77–96%"  # the paper's downtime reduction over its workloads (no per-workload split given)
SOURCE_FIELDS = ["downtime", "total-time", "setup-time", "pages-time", "transferred", "heap-bytes",
                 "pages-pushed", "postcopy-pages", "postcopy-requests", "throughput-mbps", "population-time"]
TARGET_FIELDS = ["fault-latency-p50-us", "fault-latency-p99-us", "fetched-on-demand", "faults",
                 "population-time", "host-tracker", "tracker"]
RESERVE = 1 << 30  # memory left to everything else on the box


def heap_limit(size):
    """--max-memory for SIZE of data: the workloads' heap in use is 1.00-1.05x their data."""
    return int(size * 1.25) + (64 << 20)


def heap_estimate(size):
    return int(size * 1.05) + (64 << 20)


def human(n):
    if n is None:
        return "n/a"
    return f"{n / 2**30:g}G" if n >= 1 << 30 else f"{n / 2**20:g}M"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registered_apps(constmig, tmp):
    """The apps the binary's registry knows (its 'unknown app' error lists them), or None."""
    r = subprocess.run([constmig, "--state-dir", os.path.join(tmp, "probe"), "run", "--app", "__no_such_app__",
                        "--control", os.path.join(tmp, "probe.ctl"), "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"known: ([^)]*)\)", r.stdout + r.stderr)
    return [x.strip() for x in m.group(1).split(",")] if m else None


def machine():
    mem = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_total_bytes": mem,
            "mem_available_bytes": mb.mem_available(), "hostname": socket.gethostname(),
            "kernel": os.uname().release}


class EvalHosts(atb.Hosts):
    """atb.Hosts with its own prefix, and tc tbf on both veth ends for --rate."""

    def __init__(self, use_netns, prefix, rate):
        super().__init__(use_netns, prefix)
        self.rate = None
        if rate in (None, "", "none"):
            return
        if not self.netns:
            print(f"--rate {rate}: no veth on loopback, NOT rate-limited")
            return
        bits = int(float(re.fullmatch(r"([\d.]+)gbit", rate).group(1)) * 1e9)
        burst = max(256 << 10, bits // 8 // 100)  # >= one 10 ms tick's worth of bytes
        for h in "ab":
            subprocess.run(self.cmd(h, ["tc", "qdisc", "replace", "dev", f"{prefix}-v{h}", "root", "tbf", "rate", rate,
                                        "burst", str(burst), "latency", "50ms"]), check=True)
        self.rate = rate
        print(f"link: tc tbf {rate} (burst {burst} B) on {prefix}-va and {prefix}-vb")


def warm_memory(nbytes):
    """Touch nbytes of anonymous memory once (in a child, 256 MiB at a time, all held until the end),
    so the runs do not pay the kernel's first reclaim of page cache."""
    code = ("import mmap,sys\nn=int(sys.argv[1]);c=256<<20;keep=[]\nwhile n>0:\n m=mmap.mmap(-1,min(c,n))\n"
            " for o in range(0,len(m),4096): m[o]=1\n keep.append(m);n-=len(m)\n")
    t0 = time.time()
    subprocess.run([sys.executable, "-c", code, str(nbytes)], check=False)
    return time.time() - t0


class RunFailed(Exception):
    pass


def poll(pred, timeout):
    """mb.wait_for with a slower pace for long waits (every check may spawn `constmig status`)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.1 if time.time() - t0 < 5 else 1.0)
    return False


class Eval:
    def __init__(self, a, constmig, tmp, hosts):
        self.a, self.constmig, self.tmp, self.hosts = a, constmig, tmp, hosts
        self.n = 0
        self.t_start = time.time()
        self.done = 0
        self.total = 0

    def progress(self, what):
        el = time.time() - self.t_start
        print(f"[{self.done}/{self.total} runs done, {el // 60:.0f}m{el % 60:04.1f}s] {what}", flush=True)

    def status(self, p):
        return atb.status(self.constmig, p.ctl, timeout=120)

    def app_stats(self, p):
        return self.status(p).get("app_stats") or {}

    def start(self, host, verb, app, size, extra):
        self.n += 1
        name = f"{self.n:03d}-{app}-{verb}-{host}"
        ctl = os.path.join(self.tmp, f"{name}.ctl")
        argv = [self.constmig, "--state-dir", os.path.join(self.tmp, host), verb, "--app", app, "--control", ctl,
                "--stats-interval", "0", "--max-memory", str(heap_limit(size)),
                "--io-threads", str(self.a.io_threads)] + extra
        p = atb.Proc(self.hosts.cmd(host, argv), os.path.join(self.tmp, f"{name}.log"))
        p.ctl, p.name, p.host = ctl, name, host
        return p

    def timeline(self, p):
        """The app's 100 ms ops/s samples on the wall clock, and its app_stats (the last sample is
        0-0.1 s older than the status answer)."""
        t_q = time.time()
        aps = self.app_stats(p)
        t_q = (t_q + time.time()) / 2
        tl = aps.get("timeline") or []
        if not tl:
            return [], aps
        off = t_q - 0.05 - tl[-1][0] / 1000.0
        return [(t / 1000.0 + off, r) for t, r in tl], aps

    def start_source(self, app, size):
        """Host a builds the data; returns the process once its load runs and it verified itself."""
        t0 = time.time()
        p = self.start("a", "run", app, size, ["--data", str(size)])
        timeout = self.a.init_timeout_per_gib * max(1.0, size / 2**30) + 60
        ok = poll(lambda: p.p.poll() is not None or (os.path.exists(p.ctl) and
                                                       self.app_stats(p).get("ops_here", 0) > 0), timeout)
        if not ok or p.p.poll() is not None:
            p.stop()
            raise RunFailed(f"{app} did not build {human(size)} within {timeout:.0f} s: {mb.tail(p.log_path, 15)}")
        init_s = time.time() - t0
        # The first status asked for a verification of the freshly built data: wait for it.
        poll(lambda: (self.app_stats(p).get("verification") or {}).get("state") == "done", timeout)
        s = self.app_stats(p)
        info = {"init_s": round(init_s, 2), "init_ms": s.get("init_ms"), "verified": s.get("verified"),
                "verification": s.get("verification"), "heap_in_use": (self.status(p).get("heap") or {}).get("in_use")}
        if s.get("verified") is not True:
            p.stop()
            raise RunFailed(f"{app}: the source's own verification failed: {info['verification']}")
        print(f"   {app} {human(size)}: data built in {init_s:.1f} s (init {s.get('init_ms', 0) / 1000:.1f} s), "
              f"heap in use {(info['heap_in_use'] or 0) / 2**20:.0f} MiB, verified", flush=True)
        return p, info

    def hop(self, src, app, size, mode, to, workers, tag):
        """Migrate src's app to host `to` in `mode`; returns (row, target process or None)."""
        a = self.a
        row = {"workload": app, "size": human(size), "size_bytes": size, "mode": mode, "from": src.host, "to": to,
               "workers": workers}
        self.progress(f"{app} {human(size)} {LABEL[mode]} {src.host}->{to}{tag}")
        port = free_port()
        dst = None
        try:
            dst = self.start(to, "receive", app, size, ["--listen", f"{self.hosts.addr[to]}:{port}",
                                                          "--workers", str(workers), "--accept-timeout", "900"]
                             + (["--self-test-corrupt"] if mode == a.self_test_corrupt else []))
            if not mb.wait_for(lambda: dst.has("waiting for an incoming") or dst.p.poll() is not None, 60) \
                    or dst.p.poll() is not None:
                raise RunFailed(f"target did not start: {mb.tail(dst.log_path, 15)}")
            time.sleep(a.pre)
            tl_src, _ = self.timeline(src)
            t_mig = time.time()
            mig = subprocess.Popen([self.constmig, "migrate", "--control", src.ctl, "--to",
                                    f"{self.hosts.addr[to]}:{port}", "--workers", str(workers)] + MODES[mode],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # The source keeps serving until the stop phase: its timeline as late as it answers.
            while mig.poll() is None and time.time() - t_mig < a.migrate_timeout:
                try:
                    tl, _ = self.timeline(src)
                    tl_src = tl or tl_src
                except (subprocess.TimeoutExpired, OSError):
                    pass
                time.sleep(0.3)
            try:
                out, err = mig.communicate(timeout=max(1, a.migrate_timeout - (time.time() - t_mig)))
            except subprocess.TimeoutExpired:
                mig.kill()
                mig.communicate()
                raise RunFailed(f"migrate did not return within {a.migrate_timeout} s")
            t_ret = time.time()
            try:
                m = json.loads(out[:out.rindex("}") + 1]) if "}" in out else {}
            except ValueError:
                m = {}
            if mig.returncode != 0 or m.get("status") != "completed":
                raise RunFailed(f"migrate rc {mig.returncode}, status {m.get('status')}: {err.strip()[-800:]}")
            tgt = m.get("target") or {}
            row.update({k: m.get(k) for k in SOURCE_FIELDS})
            row["target"] = {k: tgt.get(k) for k in TARGET_FIELDS}
            row["migrate_wall_s"] = round(t_ret - t_mig, 3)
            if not mb.wait_for(lambda: src.p.poll() is not None, 120):
                raise RunFailed("the source did not exit after the commit")
            vt = a.verify_timeout_per_gib * max(1.0, size / 2**30) + 60
            if not poll(lambda: (self.app_stats(dst).get("verification") or {}).get("state") == "done", vt):
                raise RunFailed(f"no verification on the target within {vt:.0f} s")
            t_ver = time.time()
            time.sleep(a.window + 0.3)
            tl_dst, s = self.timeline(dst)
            t_end = time.time()
            v = s.get("verification") or {}
            row["verified"] = s.get("verified") is True and s.get("migrated_in") is True and \
                v.get("reason") in ("after-migration", "restore-check")
            row["verification"] = v
            row["errors"] = s.get("errors")
            row["verification_done_after_return_s"] = round(t_ver - t_ret, 2)
            pre = [x for t, x in tl_src if t_mig - a.window < t <= t_mig]
            post = [x for t, x in tl_dst if t_end - a.window < t <= t_end]
            row["pre_ops_per_s"] = sum(pre) / len(pre) if pre else None
            row["post_ops_per_s"] = sum(post) / len(post) if post else None
            row["post_over_pre"] = row["post_ops_per_s"] / row["pre_ops_per_s"] \
                if row["pre_ops_per_s"] and row["post_ops_per_s"] is not None else None
            # Source samples (it serves until the stop phase), then the target's (from its resume).
            t_stop = min((t for t, _ in tl_dst), default=t_ret)
            row["timeline"] = [[round(t - t_mig, 2), x] for t, x in tl_src if t_mig - a.pre - 1 < t < t_stop] + \
                [[round(t - t_mig, 2), x] for t, x in tl_dst]
            row["timeline_source_until_s"] = round(max((t for t, _ in tl_src), default=t_mig) - t_mig, 2)
            if not row["verified"]:
                row["failed"] = f"VERIFICATION FAILED on the target: {v.get('detail')} (reason {v.get('reason')})"
            elif s.get("errors"):
                row["failed"] = f"{s.get('errors')} load errors on the target: {s.get('last_error')}"
            print(f"   {LABEL[mode]}: downtime {row['downtime']:.1f} ms, total {row['total-time']:.0f} ms, "
                  f"{(row['transferred'] or 0) / 2**20:.0f} MiB, on-demand pages {row['postcopy-pages'] or 0}, "
                  f"p99 {fmt(tgt.get('fault-latency-p99-us'))} us, "
                  f"post/pre {fmt(row['post_over_pre'], '{:.2f}')}, "
                  f"{'verified' if row['verified'] else 'VERIFICATION FAILED'}", flush=True)
        except (RunFailed, subprocess.TimeoutExpired) as e:
            row["failed"] = str(e)
        if "failed" in row:
            keep = os.path.join(a.out, "failed", f"{app}-{human(size)}-{mode}{tag.replace(' ', '-')}")
            os.makedirs(keep, exist_ok=True)
            for p in (src, dst):
                if p is not None and os.path.exists(p.log_path):
                    shutil.copy(p.log_path, keep)
            row["logs"] = keep
            print(f"   {LABEL[mode]}: FAILED: {row['failed']} (logs in {keep})", flush=True)
        self.done += 1
        ok = "failed" not in row
        if not ok:
            if dst is not None:
                dst.stop()
            dst = None
        return row, dst

    def chain(self, app, size, modes, workers=None, tag=""):
        """Build once on host a, then one hop per mode, alternating hosts. Returns (init info, rows)."""
        rows = []
        try:
            src, info = self.start_source(app, size)
        except RunFailed as e:
            print(f"   {app} {human(size)}: FAILED to start: {e}", flush=True)
            self.done += len(modes)
            return {"failed": str(e)}, [{"workload": app, "size": human(size), "size_bytes": size, "mode": m,
                                         "failed": f"not run: {e}"} for m in modes]
        cur = src
        try:
            for i, mode in enumerate(modes):
                w = workers[i] if workers else self.a.workers
                row, nxt = self.hop(cur, app, size, mode, "b" if cur.host == "a" else "a", w, tag)
                row["hop"] = i + 1
                rows.append(row)
                if nxt is None:
                    for m in modes[i + 1:]:
                        rows.append({"workload": app, "size": human(size), "size_bytes": size, "mode": m,
                                     "failed": "not run: an earlier hop of this chain failed"})
                        self.done += 1
                    break
                cur.stop()
                cur = nxt
        finally:
            if cur is not None:
                cur.stop()
        return info, rows

    def evaluate(self, workloads, sizes, modes):
        results, inits = [], []
        self.total = len(workloads) * len(sizes) * len(modes)
        for size in sizes:
            if self.a.warm:
                s = warm_memory(2 * heap_estimate(size))
                print(f"== {human(size)}: warmed {2 * heap_estimate(size) / 2**20:.0f} MiB of memory in {s:.1f} s",
                      flush=True)
            for app in workloads:
                if self.a.fresh:
                    for mode in modes:
                        info, rows = self.chain(app, size, [mode], tag=" (fresh)")
                        inits.append(dict(info, workload=app, size=human(size), mode=mode))
                        results += rows
                else:
                    info, rows = self.chain(app, size, modes)
                    inits.append(dict(info, workload=app, size=human(size)))
                    results += rows
        return results, inits

    def worker_sweep(self, app, size, counts, mode):
        """One data set, migrated back and forth once per worker count (source and target alike)."""
        self.total = len(counts)
        info, rows = self.chain(app, size, [mode] * len(counts), workers=counts, tag=" (worker sweep)")
        return info, rows


def fmt(v, f="{:.0f}"):
    return "n/a" if v is None else f.format(v)


def summarize(doc):
    """Reduction vs stop-and-copy (same workload and size) into every run; per-workload ranges."""
    runs = doc["runs"]
    base = {(r["workload"], r["size"]): r.get("downtime") for r in runs
            if r["mode"] == "stop-and-copy" and "failed" not in r}
    for r in runs:
        b = base.get((r["workload"], r["size"]))
        r["reduction_pct"] = (100.0 * (1 - r["downtime"] / b) if b and r.get("downtime") is not None and "failed" not in r
                              and r["mode"] != "stop-and-copy" else None)
    per = []
    for w in doc["workloads"]:
        e = {"workload": w}
        for m in ("fault", "access"):
            red = [r["reduction_pct"] for r in runs if r["workload"] == w and r["mode"] == m
                   and r.get("reduction_pct") is not None]
            e[m] = [min(red), max(red)] if red else None
        e["runs"] = sum(1 for r in runs if r["workload"] == w)
        e["verified"] = sum(1 for r in runs if r["workload"] == w and r.get("verified") is True)
        e["failed"] = sum(1 for r in runs if r["workload"] == w and "failed" in r)
        per.append(e)
    doc["per_workload"] = per
    doc["all_verified"] = bool(runs) and all(r.get("verified") is True and "failed" not in r for r in runs)


def md_table(head, rows):
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def header_lines(doc):
    m = doc["machine"]
    return [f"- command: `{doc['command']}`",
            f"- date {doc['date']}, git {(doc.get('git') or {}).get('commit', '?')[:12]}"
            f"{' (modified: ' + ', '.join(doc['git']['modified']) + ')' if (doc.get('git') or {}).get('modified') else ''}, "
            f"constmig sha256 {doc['binary']['sha256'][:12]}",
            f"- machine: {m['cpus']} CPUs ({m.get('cpu_model')}), {m['mem_total_bytes'] / 2**30:.1f} GiB RAM, "
            f"load average before {doc.get('loadavg_before')}",
            f"- hosts: {doc['hosts']}, link {doc.get('rate') or 'not rate-limited'}; {doc['scheme']}"]


def render(doc):
    summarize(doc)
    L = [f"# Workload evaluation ({'worker sweep' if doc.get('kind') == 'worker-sweep' else 'all modes'})", ""]
    L += header_lines(doc) + [f"- skipped: {x['workload']} ({x['reason']})" for x in doc.get("skipped", [])] + [""]
    if doc.get("kind") == "worker-sweep":
        rows = []
        for r in doc["runs"]:
            if "failed" in r:
                rows.append([r.get("workers"), "**FAILED**: " + r["failed"][:80], "", "", "", "", ""])
                continue
            rows.append([r["workers"], f"{r['from']}->{r['to']}", fmt(r.get("pages-time")),
                         fmt(r.get("throughput-mbps")), fmt(r.get("downtime"), "{:.1f}"), fmt(r.get("total-time")),
                         "yes" if r.get("verified") and "failed" not in r else "**NO**"])
        L.append(md_table(["workers (source & target)", "hop", "heap stream ms", "heap MiB/s (throughput-mbps)",
                           "downtime ms", "total ms", "verified"], rows))
        L += ["", f"{doc['runs'][0]['workload'] if doc['runs'] else ''} {doc['config']['sizes'][0]}, mode "
              f"{doc['config']['sweep_mode']}: `constmig migrate --workers N` and `receive --workers N`; "
              "heap MiB/s = the source's throughput-mbps: heap MiB / pages-time (the heap stream)."]
        return "\n".join(L) + "\n"
    head = ["workload", "size", "mode", "downtime ms", "reduction vs s&c", "paper", "total ms", "transferred MiB",
            "on-demand pages", "p99 fault µs", "post/pre ops/s", "verified"]
    rows = []
    for r in doc["runs"]:
        lead = [r["workload"], r["size"], LABEL.get(r["mode"], r["mode"])]
        if "failed" in r and r.get("downtime") is None:
            rows.append(lead + ["**FAILED**: " + r["failed"][:100]] + [""] * 8)
            continue
        p99 = (r.get("target") or {}).get("fault-latency-p99-us")
        rows.append(lead + [fmt(r.get("downtime"), "{:.1f}"), fmt(r.get("reduction_pct"), "{:.1f}%"),
                            PAPER if r["mode"] != "stop-and-copy" else "", fmt(r.get("total-time")),
                            fmt((r.get("transferred") or 0) / 2**20), fmt(r.get("postcopy-pages")),
                            fmt(p99), fmt(r.get("post_over_pre"), "{:.2f}"),
                            "yes" if r.get("verified") and "failed" not in r else "**NO**: " + r.get("failed", "")[:80]])
    L.append(md_table(head, rows))
    L += ["", "## Downtime reduction per workload (range over sizes) vs the paper", ""]
    L.append(md_table(["workload", "live+fault", "live+access", "paper", "runs verified"],
                      [[e["workload"],
                        f"{e['fault'][0]:.1f}–{e['fault'][1]:.1f}%" if e["fault"] else "n/a",
                        f"{e['access'][0]:.1f}–{e['access'][1]:.1f}%" if e["access"] else "n/a",
                        "77–96%", f"{e['verified']}/{e['runs']}"] for e in doc["per_workload"]]))
    L += ["", "downtime: first ECALL held on the source to the first served on the target; reduction = 1 − live / "
          "stop-and-copy downtime (same workload, size); on-demand pages = postcopy-pages (pages the target asked "
          "for ahead of the stream); p99 = the target's fault-latency-p99-us (fault: SIGSEGV until the granule is "
          "open; access: the fetch OCALL's wait); post/pre = the app's ops/s in the last "
          f"{doc['config']['window_s']:g} s of the tail (after the target's verification) / the "
          f"{doc['config']['window_s']:g} s before `migrate`. Paper: 77–96% over its workloads (no split per workload)."]
    if doc.get("inits"):
        L += ["", "## Data build (init) per workload and size", ""]
        L.append(md_table(["workload", "size", "build s", "heap in use MiB"],
                          [[i["workload"], i["size"], fmt(i.get("init_s"), "{:.1f}"),
                            fmt((i.get("heap_in_use") or 0) / 2**20)] for i in doc["inits"] if "failed" not in i]))
    return "\n".join(L) + "\n"


def plots(doc, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return []
    written = []
    ok = [r for r in doc["runs"] if "failed" not in r]
    colors = {"stop-and-copy": "tab:gray", "fault": "tab:blue", "access": "tab:orange"}
    if doc.get("kind") == "worker-sweep":
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["workers"] for r in ok], [r.get("throughput-mbps") or 0 for r in ok], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers (source encrypt = target restore)")
        ax.set_ylabel("heap stream MiB/s (throughput-mbps)")
        ax.set_xticks([r["workers"] for r in ok])
        ax.set_xticklabels([str(r["workers"]) for r in ok])
        ax.set_title(f"worker sweep: {doc['config']['workloads'][0]} {doc['config']['sizes'][0]}, "
                     f"{doc['config']['sweep_mode']}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = os.path.join(out, "worker_sweep.png")
        fig.savefig(p, dpi=100)
        plt.close(fig)
        return [p]
    wl = doc["workloads"]
    n = len(wl)
    cols = min(3, max(1, n))
    rws = (n + cols - 1) // cols
    fig, axs = plt.subplots(rws, cols, figsize=(5 * cols, 3.8 * rws), squeeze=False)
    for i, w in enumerate(wl):
        ax = axs[i // cols][i % cols]
        for m in doc["config"]["modes"]:
            pts = sorted((r["size_bytes"], r["downtime"]) for r in ok if r["workload"] == w and r["mode"] == m)
            if pts:
                ax.plot([p[0] / 2**20 for p in pts], [p[1] for p in pts], "o-", color=colors[m], label=LABEL[m])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([mb.parse_size(x) / 2**20 for x in doc["config"]["sizes"]])
        ax.set_xticklabels(doc["config"]["sizes"])
        ax.minorticks_off()
        ax.set_xlabel("heap (data)")
        ax.set_ylabel("downtime ms")
        ax.set_title(w, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for j in range(n, rws * cols):
        axs[j // cols][j % cols].axis("off")
    fig.suptitle(f"downtime vs heap size ({doc['machine']['cpus']} CPUs, {doc['hosts']}, {doc['date']})", fontsize=10)
    fig.tight_layout()
    p = os.path.join(out, "workload_eval_downtime.png")
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    sizes = doc["config"]["sizes"]
    fig, axs = plt.subplots(n, len(sizes), figsize=(max(8.0, 4.2 * len(sizes)), 2.6 * n + 0.6), squeeze=False)
    for i, w in enumerate(wl):
        for j, s in enumerate(sizes):
            ax = axs[i][j]
            for r in ok:
                if r["workload"] == w and r["size"] == s and r.get("timeline"):
                    # Source (before 0) and target apart: no line drawn across the migration.
                    cut = r.get("timeline_source_until_s", 0)
                    for k, part in enumerate(([p for p in r["timeline"] if p[0] <= cut],
                                              [p for p in r["timeline"] if p[0] > cut])):
                        ax.plot([t for t, _ in part], [x for _, x in part], lw=0.8, color=colors[r["mode"]],
                                label=LABEL[r["mode"]] if k == 0 else None)
            ax.axvline(0, color="k", lw=0.5)
            ax.set_title(f"{w} {s}", fontsize=9)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("ops/s", fontsize=8)
            if i == n - 1:
                ax.set_xlabel("s since migrate", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    fig.suptitle("app ops/s (100 ms samples) around each migration (0 = migrate started): source, then target",
                 fontsize=10)
    fig.tight_layout()
    p = os.path.join(out, "workload_eval_timeline.png")
    fig.savefig(p, dpi=90)
    plt.close(fig)
    written.append(p)
    return written


def write_outputs(doc, out):
    os.makedirs(out, exist_ok=True)
    stem = "worker_sweep" if doc.get("kind") == "worker-sweep" else "workload_eval"
    text = render(doc)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(text)
    path = os.path.join(out, f"{stem}.json")
    js = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
                json.dumps(doc, indent=1))
    with open(path, "w") as f:
        f.write(js + "\n")
    print("\n" + text)
    for p in [path, os.path.join(out, f"{stem}.md")] + plots(doc, out):
        print(f"wrote {p}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (its bin/ has constmig and the enclaves)")
    ap.add_argument("--bin", help="bin directory instead of --build/bin")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma list; {', '.join(OPTIONAL)} is added when the binary's registry lists it")
    ap.add_argument("--no-auto-workloads", action="store_true", help=f"do not add {', '.join(OPTIONAL)} by itself")
    ap.add_argument("--sizes", default="256M,1G,4G,8G", help="data per workload (16G, 32G where memory allows)")
    ap.add_argument("--modes", default="stop-and-copy,fault,access", help="order of the hops")
    ap.add_argument("--fresh", action="store_true", help="a fresh source per run instead of one data set per "
                    "workload and size migrated back and forth")
    ap.add_argument("--rate", default="none", help="tc tbf on the veth: 1gbit, 10gbit or none")
    ap.add_argument("--workers", type=int, default=2, help="encrypt/restore workers (source and target)")
    ap.add_argument("--io-threads", type=int, default=2, help="the apps' load threads")
    ap.add_argument("--pre", type=float, default=3.0, help="s of load on the source before migrate")
    ap.add_argument("--window", type=float, default=2.0, help="s of the pre and post throughput windows")
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="do not touch the memory before each size")
    ap.add_argument("--init-timeout-per-gib", type=float, default=600, help="s per GiB for a workload to build its data")
    ap.add_argument("--verify-timeout-per-gib", type=float, default=300)
    ap.add_argument("--migrate-timeout", type=int, default=1800)
    ap.add_argument("--no-netns", action="store_true", help="loopback even when namespaces work")
    ap.add_argument("--netns-prefix", default="cmeval", help="scripts/netns-hosts.sh --prefix")
    ap.add_argument("--worker-sweep", metavar="N,N,...", help="worker sweep instead: one workload (the first), "
                    "one size (the first), migrated back and forth once per worker count")
    ap.add_argument("--sweep-mode", default="stop-and-copy", choices=list(MODES), help="mode of the worker sweep")
    ap.add_argument("--self-test-corrupt", metavar="MODE", help="TESTING ONLY: the target of the MODE hop corrupts "
                    "one value before its verification (receive --self-test-corrupt): that run must fail")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 32M, every workload and mode, short windows")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--from-json", metavar="PATH", help="no runs: tables and plots again from a JSON")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            write_outputs(json.load(f), a.out)
        return 0
    if a.quick:
        a.sizes, a.pre, a.window, a.warm = "32M", 1.0, 0.5, False
    bindir = os.path.abspath(a.bin or os.path.join(a.build, "bin"))
    constmig = os.path.join(bindir, "constmig")
    if not os.path.exists(constmig):
        sys.exit(f"{constmig} missing: build first (cmake --build BUILD --target constmig <app>_enclave ...)")
    sizes = [mb.parse_size(s) for s in a.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        sys.exit(f"unknown mode(s) {bad}: {', '.join(MODES)}")
    if a.rate not in ("none", "") and not re.fullmatch(r"[\d.]+gbit", a.rate):
        sys.exit("--rate: 1gbit, 10gbit (any Ngbit) or none")
    tmp = tempfile.mkdtemp(prefix="cmeval-")
    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    known = registered_apps(constmig, tmp)
    skipped = []
    if known is not None:
        unknown = [w for w in workloads if w not in known]
        if unknown:
            sys.exit(f"not in {constmig}'s app registry: {unknown} (it has {', '.join(known)})")
        for w in OPTIONAL if not a.no_auto_workloads else []:
            if w in known and w not in workloads:
                if os.path.exists(os.path.join(bindir, f"{w}_enclave.enclave.so")):
                    workloads.append(w)
                    print(f"{w}: in the app registry, included")
                else:
                    skipped.append({"workload": w, "reason": f"in the registry but no {w}_enclave.enclave.so in {bindir}"})
                    print(f"{w}: SKIPPED: {skipped[-1]['reason']}")
    missing = [w for w in workloads if not os.path.exists(os.path.join(bindir, f"{w}_enclave.enclave.so"))]
    if missing:
        sys.exit(f"no enclave image for {missing} in {bindir}: build {' '.join(w + '_enclave' for w in missing)}")
    sweep = [int(x) for x in a.worker_sweep.split(",")] if a.worker_sweep else None
    if sweep:
        workloads, sizes = workloads[:1], sizes[:1]
    avail = mb.mem_available() or 0
    too_big = [s for s in sizes if 2 * heap_estimate(s) + RESERVE > avail]
    if too_big:
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit("refused: not enough memory for " + ", ".join(
            f"{human(s)} (source and target both hold the heap: ~{(2 * heap_estimate(s) + RESERVE) / 2**30:.1f} GiB "
            f"needed)" for s in too_big) + f"; MemAvailable is {avail / 2**30:.1f} GiB. Drop those sizes from --sizes.")
    with open(constmig, "rb") as f:
        binary = {"path": constmig, "sha256": hashlib.sha256(f.read()).hexdigest()}
    load_before = atb.loadavg()
    scheme = ("chain: each workload's data built once per size on host a and migrated back and forth "
              f"({' -> '.join(LABEL[m] for m in modes)}, alternating a->b, b->a), verified on the target after every "
              "migration" if not a.fresh else "fresh: a new source (data built again) for every run")
    if sweep:
        scheme = (f"worker sweep: one data set migrated back and forth once per worker count "
                  f"({','.join(map(str, sweep))}), {LABEL[a.sweep_mode]}, verified after every migration")
    print(f"load average (1 min) before: {load_before}; {scheme}")
    print(f"workloads {','.join(workloads)}; sizes {','.join(human(s) for s in sizes)}; modes {','.join(modes)}",
          flush=True)
    atb.setup_trust(constmig, tmp)
    hosts = EvalHosts(not a.no_netns, a.netns_prefix, a.rate)
    os.makedirs(a.out, exist_ok=True)
    ev = Eval(a, constmig, tmp, hosts)
    doc = {"benchmark": "workload_eval", "kind": "worker-sweep" if sweep else "modes",
           "command": shlex.join([sys.executable] + sys.argv), "cwd": os.getcwd(), "git": mb.git_state(),
           "binary": binary, "machine": machine(), "loadavg_before": load_before,
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "platform": "emulated SGX",
           "hosts": "netns" if hosts.netns else "loopback", "rate": hosts.rate, "scheme": scheme,
           "workloads": workloads, "skipped": skipped, "registry": known,
           "config": {"sizes": [human(s) for s in sizes], "modes": modes, "workers": a.workers, "io_threads": a.io_threads,
                      "pre_s": a.pre, "window_s": a.window, "warm": a.warm, "fresh": a.fresh, "quick": a.quick,
                      "max_memory": {human(s): heap_limit(s) for s in sizes}, "workloads": workloads,
                      "sweep": sweep, "sweep_mode": a.sweep_mode}}
    try:
        if sweep:
            info, runs = ev.worker_sweep(workloads[0], sizes[0], sweep, a.sweep_mode)
            doc["runs"], doc["inits"] = runs, [dict(info, workload=workloads[0], size=human(sizes[0]))]
        else:
            doc["runs"], doc["inits"] = ev.evaluate(workloads, sizes, modes)
    finally:
        hosts.down()
        shutil.rmtree(tmp, ignore_errors=True)
    doc["elapsed_s"] = round(time.time() - ev.t_start, 1)
    write_outputs(doc, a.out)
    failed = [r for r in doc["runs"] if "failed" in r or r.get("verified") is not True]
    print(f"{len(doc['runs']) - len(failed)}/{len(doc['runs'])} runs completed and verified in {doc['elapsed_s']:.0f} s"
          + (f"; FAILED: {', '.join(r['workload'] + ' ' + r['size'] + ' ' + r['mode'] for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
