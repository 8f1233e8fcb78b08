#!/usr/bin/env python3
"""Workload suite under migration: each app (btree, hashjoin, graph, xsbench, sqlite) runs with
its built-in load, is migrated between two constmig processes, and must verify itself on the
target.

Usage: workload_migration_test.py --bin BUILD/bin --app APP --mode fault|access|stop-and-copy|corrupt
  fault          live migration (--mode constmig --tracker fault) under load
  stop-and-copy  the baseline, under load
  corrupt        live migration whose target corrupts one value in the enclave before verifying
                 (receive --self-test-corrupt): the verification must report failure
Reuses the process helpers of tests/migration/migration_test.py. Exit 0 pass, 1 fail.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migration"))
import migration_test as mt  # noqa: E402
from migration_test import check, wait_for  # noqa: E402

HEAP = "128M"
DATA = "48M"


def app_stats(c):
    s = mt.status(c)
    return (s or {}).get("app_stats") or {}


def run_case(app, mode):
    mt.setup_hosts()
    port = mt.free_port()
    src, sc = mt.start_source(app, ["--max-memory", HEAP, "--data", DATA, "--io-threads", "2"])
    wait_for(lambda: app_stats(sc).get("ops_here", 0) > 0, 30, "source load")
    # On demand (status asks for it): the source verifies its own data first.
    wait_for(lambda: app_stats(sc).get("verification", {}).get("state") == "done", 60,
             "source verification")
    s0 = app_stats(sc)
    check(s0["verified"] is True, f"source verified its data: {s0['verification']['detail']}")
    check(s0["errors"] == 0, f"no load errors on the source ({s0['last_error']})")
    extra = ["--max-memory", HEAP, "--io-threads", "2"]
    if mode == "corrupt":
        extra.append("--self-test-corrupt")
    tgt, tc = mt.start_target(app, extra, port)
    src_ops = app_stats(sc).get("ops_total", 0)
    rc, stats, err = mt.migrate(sc, port)
    check(rc == 0, f"migrate succeeded (rc={rc}) {err[-300:]}")
    check(stats["status"] == "completed", "status completed")
    if mode == "access":
        check(stats.get("target", {}).get("tracker") == "access" and
              stats["target"].get("host-tracker") == "none",
              "the instrumented image's own checks guarded the heap (no host fault tracker)")
    print(f"  info: downtime {stats.get('downtime', 0):.1f} ms, "
          f"total {stats.get('total-time', 0):.0f} ms")
    wait_for(lambda: src.poll() is not None, 20, "source to exit after commit")
    wait_for(lambda: app_stats(tc).get("verification", {}).get("state") == "done", 90,
             "target verification after the migration")
    t = app_stats(tc)
    v = t["verification"]
    check(t["migrated_in"] is True, "target runs migrated state")
    check(v["reason"] in ("after-migration", "restore-check"), f"verified because: {v['reason']}")
    if mode == "corrupt":
        check(t["verified"] is False, f"corrupted target reports verified:false ({v['detail']})")
        check("VERIFICATION FAILED" in mt.log_of(tgt), "failure logged loudly on the target")
        return
    check(t["verified"] is True, f"target verified after migration: {v['detail']} "
          f"({v['ms']:.1f} ms, digest {v['digest']})")
    check(t["ops_total"] >= src_ops, f"ops total carried over: {t['ops_total']} >= {src_ops}")
    before = t["ops_here"]
    wait_for(lambda: app_stats(tc).get("ops_here", 0) > before, 20, "ops to continue on target")
    t = app_stats(tc)
    check(t["errors"] == 0, f"no load errors on the target ({t['last_error']})")
    wait_for(lambda: len(app_stats(tc).get("timeline", [])) >= 3, 20, "3 samples on the target")
    t = app_stats(tc)
    rates = [r for _, r in t.get("timeline", [])]
    check(len(rates) >= 2 and max(rates) > 0,
          f"target timeline: {len(rates)} samples of 100 ms, peak {max(rates or [0])} ops/s")
    check(t["ops_here"] > before, f"ops continued after the migration ({t['ops_here']} here)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--app", required=True,
                    choices=["btree", "hashjoin", "graph", "xsbench", "sqlite"])
    ap.add_argument("--mode", required=True, choices=["fault", "access", "stop-and-copy", "corrupt"])
    a = ap.parse_args()
    mt.BIN = os.path.abspath(a.bin)
    mt.TMP = tempfile.mkdtemp(prefix="cmwl-")
    mt.MODE = a.mode if a.mode in ("stop-and-copy", "access") else "fault"
    return mt.run_reported(f"{a.app}.{a.mode}", lambda: run_case(a.app, a.mode))


if __name__ == "__main__":
    sys.exit(main())
