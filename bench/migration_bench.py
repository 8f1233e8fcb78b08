#!/usr/bin/python3
"""Stop-and-copy migration of the kvstore enclave app at several heap sizes, in one run.

For each size: start a source `constmig run --app kvstore`, fill its enclave store with
DEBUG POPULATE (4000-byte values), start a target `constmig receive`, run
`constmig migrate --mode stop-and-copy`, and record downtime, total time and the heap-stream
throughput. In the same run, AES-256-GCM on 4 KiB records on one core (`openssl speed -evp`)
gives the reference the stream throughput is reported against.

Hosts: the two network-namespace hosts of scripts/netns-hosts.sh when available, else loopback
(said in the output). Writes JSON and a PNG plot.
Usage: bench/migration_bench.py [--build build] [--sizes 256M,1G,4G,8G] [--out bench-results]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="256M,1G,4G,8G")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--no-netns", action="store_true", help="use loopback even when namespaces work")
    args = ap.parse_args()
    constmig = os.path.abspath(os.path.join(args.build, "bin", "constmig"))
    if not os.path.exists(constmig):
        sys.exit(f"{constmig} missing: build first (scripts/setup.sh)")
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
    try:
        for size_s in args.sizes.split(","):
            size = parse_size(size_s)
            limit = int(size * 1.4) + (64 << 20)
            value = 4000
            count = size // (value + 96)
            sport, tport, mport = 6400, 6401, 7400
            sctl, tctl = os.path.join(tmp, "src.ctl"), os.path.join(tmp, "dst.ctl")
            logs = [open(os.path.join(tmp, f"{n}.log"), "w") for n in ("src", "dst")]
            src = subprocess.Popen(hosts.cmd("a", [constmig, "--state-dir", os.path.join(tmp, "a"), "run", "--app", "kvstore",
                                                   "--bind", hosts.addr["a"], "--port", str(sport), "--max-memory", str(limit),
                                                   "--control", sctl, "--stats-interval", "0"]),
                                   stdout=logs[0], stderr=subprocess.STDOUT)
            try:
                if not wait_for(lambda: os.path.exists(sctl), 30):
                    sys.exit("source did not start: " + open(logs[0].name).read()[-2000:])
                t0 = time.time()
                # Fill in chunks so no single ECALL runs for minutes.
                chunk = 50000
                for first in range(0, count, chunk):
                    n = min(chunk, count - first)
                    r = kv(hosts, "a", sport, "DEBUG", "POPULATE", str(n), f"k{first}", str(value))
                    if r != "OK":
                        sys.exit(f"populate failed: {r}")
                fill_s = time.time() - t0
                st = json.loads(subprocess.run([constmig, "status", "--control", sctl], capture_output=True, text=True).stdout)
                heap = st.get("heap", {})
                print(f"== {size_s}: {count} keys x {value} B, heap in use {heap.get('in_use', 0) / 2**20:.0f} MiB "
                      f"(filled in {fill_s:.1f} s)", flush=True)
                dst = subprocess.Popen(hosts.cmd("b", [constmig, "--state-dir", os.path.join(tmp, "b"), "receive", "--app", "kvstore",
                                                       "--bind", hosts.addr["b"], "--port", str(tport), "--max-memory", str(limit),
                                                       "--listen", f"{hosts.addr['b']}:{mport}", "--workers", str(args.workers),
                                                       "--control", tctl, "--stats-interval", "0"]),
                                       stdout=logs[1], stderr=subprocess.STDOUT)
                try:
                    if not wait_for(lambda: "waiting for an incoming" in open(logs[1].name).read(), 30):
                        sys.exit("target did not start: " + open(logs[1].name).read()[-2000:])
                    r = subprocess.run([constmig, "migrate", "--control", sctl, "--to", f"{hosts.addr['b']}:{mport}",
                                        "--mode", "stop-and-copy", "--workers", str(args.workers)],
                                       capture_output=True, text=True, timeout=1800)
                    if r.returncode != 0:
                        sys.exit(f"migration failed: {r.stderr[-2000:]}")
                    m = json.loads(r.stdout)
                    ok = kv(hosts, "b", tport, "DBSIZE") == str(count)
                    thr = m["heap-bytes"] / (m["pages-time"] / 1000.0)
                    row = {"size": size_s, "heap_bytes": m["heap-bytes"], "keys": count,
                           "downtime_ms": m.get("downtime"), "total_time_ms": m["total-time"],
                           "setup_time_ms": m["setup-time"], "pages_time_ms": m["pages-time"],
                           "transferred": m["transferred"], "zero_pages": m["zero-pages"],
                           "stream_bytes_per_s": thr, "stream_vs_aes_single_core": thr / aes if aes else None,
                           "dbsize_verified": ok, "stats": m}
                    results.append(row)
                    print(f"   downtime {row['downtime_ms']:.1f} ms, total {row['total_time_ms']:.0f} ms, "
                          f"stream {thr / 1e9:.2f} GB/s = {row['stream_vs_aes_single_core']:.2f}x single-core AES-GCM, "
                          f"DBSIZE on target {'matches' if ok else 'MISMATCH'}", flush=True)
                finally:
                    dst.send_signal(signal.SIGINT)
                    try:
                        dst.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        dst.kill()
            finally:
                if src.poll() is None:
                    src.send_signal(signal.SIGINT)
                    try:
                        src.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        src.kill()
                for f in logs:
                    f.close()
    finally:
        hosts.down()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    doc = {"benchmark": "migration_stop_and_copy", "platform": "emulated SGX", "cpus": os.cpu_count(),
           "hosts": "netns" if hosts.netns else "loopback", "workers": args.workers,
           "aes_256_gcm_single_core_bytes_per_s": aes, "command": " ".join(sys.argv), "results": results}
    path = os.path.join(args.out, "migration_stop_and_copy.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {path}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        xs = [r["heap_bytes"] / 2**30 for r in results]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(xs, [r["downtime_ms"] for r in results], "o-", label="downtime (stop-and-copy)")
        ax.plot(xs, [r["total_time_ms"] for r in results], "s--", label="total time")
        ax.set_xlabel("enclave heap moved (GiB)")
        ax.set_ylabel("ms")
        ax.set_title(f"kvstore stop-and-copy migration ({os.cpu_count()} CPUs, emulated SGX)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        png = os.path.join(args.out, "migration_stop_and_copy.png")
        fig.savefig(png, dpi=100)
        print(f"wrote {png}")
    except ImportError:
        print("matplotlib not installed: no PNG")


if __name__ == "__main__":
    main()
