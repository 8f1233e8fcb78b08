#!/usr/bin/env python3
"""bench/workload_eval.py --quick, checked: it exits 0, its JSON parses and holds one run per
workload x mode, every run verified on its target, the Markdown table and (when matplotlib is
there) the PNGs exist, --from-json redraws them; and a run whose target corrupts one value
(--self-test-corrupt fault) makes the command fail and shows the failure in JSON and table.

Usage: workload_eval_test.py --bin BUILD/bin [--keep DIR]. Exit 0 pass, 1 fail.
Network namespaces (a per-process prefix) when they can be made, else loopback.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVAL = os.path.join(ROOT, "bench", "workload_eval.py")
FAILS = []


def check(cond, msg):
    print(f"  {'ok' if cond else 'FAIL'}: {msg}", flush=True)
    if not cond:
        FAILS.append(msg)
    return cond


def python():
    """An interpreter with matplotlib if the box has one (the PNGs are then checked too)."""
    for p in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(p) and subprocess.run([p, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return p, True
    return sys.executable, False


def run(py, args, out):
    cmd = [py, EVAL, "--out", out, "--netns-prefix", f"cmev{os.getpid() % 100000}"] + args
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=360)
    sys.stdout.write(r.stdout[-6000:])
    sys.stdout.write(r.stderr[-3000:])
    return r


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check(False, f"{path} parses: {e}")
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--keep", help="write the outputs here (kept) instead of a temporary folder")
    a = ap.parse_args()
    py, png = python()
    tmp = a.keep or tempfile.mkdtemp(prefix="cmevt-")
    try:
        out = os.path.join(tmp, "quick")
        r = run(py, ["--bin", a.bin, "--quick"], out)
        check(r.returncode == 0, f"--quick exited 0 (rc {r.returncode})")
        doc = load(os.path.join(out, "workload_eval.json"))
        if doc:
            wl, modes = doc.get("workloads") or [], doc.get("config", {}).get("modes") or []
            check({"btree", "hashjoin", "graph", "xsbench"} <= set(wl), f"workloads {wl}")
            check(modes == ["stop-and-copy", "fault", "access"], f"modes {modes}")
            runs = doc.get("runs") or []
            check(sorted((x["workload"], x["mode"]) for x in runs) == sorted((w, m) for w in wl for m in modes),
                  f"one run per workload x mode ({len(runs)} runs)")
            for x in runs:
                check(x.get("verified") is True and "failed" not in x,
                      f"{x['workload']} {x['size']} {x['mode']}: verified on the target ({x.get('failed', 'ok')})")
                if "failed" in x:
                    continue
                check(isinstance(x.get("downtime"), (int, float)) and x["downtime"] > 0 and x.get("transferred", 0) > 0,
                      f"{x['workload']} {x['mode']}: downtime {x.get('downtime')} ms, {x.get('transferred')} bytes")
                check(x.get("post_over_pre") is not None and len(x.get("timeline") or []) >= 2,
                      f"{x['workload']} {x['mode']}: post/pre {x.get('post_over_pre')} from the app's timeline")
                if x["mode"] != "stop-and-copy":
                    check(x.get("reduction_pct") is not None, f"{x['workload']} {x['mode']}: reduction vs stop-and-copy")
            for k in ("command", "git", "machine", "loadavg_before", "date"):
                check(doc.get(k) not in (None, ""), f"JSON records {k}")
            check(doc.get("all_verified") is True, "all_verified")
        md = os.path.join(out, "workload_eval.md")
        check(os.path.exists(md) and "| workload | size | mode | downtime ms" in open(md).read()
              and "77–96%" in open(md).read(), "Markdown table with the paper's figure")
        pngs = [os.path.join(out, f) for f in ("workload_eval_downtime.png", "workload_eval_timeline.png")]
        if png:
            check(all(os.path.getsize(p) > 1000 for p in pngs if os.path.exists(p)) and all(map(os.path.exists, pngs)),
                  "PNG plots written")
        else:
            print("  (no matplotlib: PNGs not checked)")
        again = os.path.join(tmp, "again")
        r2 = subprocess.run([py, EVAL, "--from-json", os.path.join(out, "workload_eval.json"), "--out", again],
                            capture_output=True, text=True, timeout=120)
        check(r2.returncode == 0 and os.path.exists(os.path.join(again, "workload_eval.md")),
              "--from-json redraws the table")

        bad = os.path.join(tmp, "corrupt")
        r = run(py, ["--bin", a.bin, "--quick", "--workloads", "btree", "--no-auto-workloads",
                     "--modes", "stop-and-copy,fault", "--self-test-corrupt", "fault"], bad)
        check(r.returncode != 0, f"a corrupted target fails the command (rc {r.returncode})")
        doc = load(os.path.join(bad, "workload_eval.json"))
        if doc:
            f = [x for x in doc.get("runs", []) if x["mode"] == "fault"]
            check(len(f) == 1 and f[0].get("verified") is False and "VERIFICATION FAILED" in f[0].get("failed", ""),
                  f"the corrupted run is recorded as failed: {f[0].get('failed', '') if f else 'no run'}")
            check(doc.get("all_verified") is False, "all_verified is false")
        check("VERIFICATION FAILED" in open(os.path.join(bad, "workload_eval.md")).read(), "and shown in the table")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("PASS" if not FAILS else f"FAIL ({len(FAILS)} checks)")
    return 0 if not FAILS else 1


if __name__ == "__main__":
    sys.exit(main())
