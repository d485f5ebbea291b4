#!/usr/bin/env python3
"""Looks at a tally server of the webhooks harness while its bursts run: for finding
where the hooked server's time goes. Reads /proc and the server's /metrics; `perf`
and `policy` need root (perf, chrt/renice).

    bench/burst-probe.py batches PLAIN_TAG HOOKED_TAG SECONDS
        each second either server took POSTs: POSTs/s, write batches/s, jobs per
        batch (tally_write_batch_size_count/_sum) and jobs that were not POSTs
    bench/burst-probe.py perf TAG SECONDS OUT
        once TAG's server is taking POSTs: `perf record -a -g -F 999` for SECONDS into
        OUT (then `perf report -i OUT --sort pid,comm --no-children -g none`)
    bench/burst-probe.py policy TAG idle|batch|NICENESS|slice=NS|others=NS
        once TAG's server is up: its webhook sender's thread (`tally-webhooks`) under
        `chrt --idle`/`chrt --batch`, reniced, or given an EEVDF slice of NS
        nanoseconds (`sched_setattr`'s `sched_runtime`, Linux 6.12+); `others=NS`: that
        slice for every other thread of the server instead

TAG is a string of the server's environment (for the harness: `plain-sqlite`,
`hooked-sqlite`, or `tally_bench_webhooks_hooked` on PostgreSQL; these name the
harness's first pair of servers, and on PostgreSQL the hooked tag also the later
pairs'; `--pairs 1` puts every round on the servers found). Waits up to 5 minutes
for the server; start it before the harness.
"""
import os
import re
import subprocess
import sys
import time
import urllib.request

WAIT = 300


def find(tag):
    """(pid, TALLY_BIND) of a process whose environment holds TALLY_BIND and `tag`."""
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        pairs = dict(e.split(b"=", 1) for e in env if b"=" in e)
        if b"TALLY_BIND" in pairs and any(tag.encode() in e for e in env):
            return p, pairs[b"TALLY_BIND"].decode()
    return None


def wait_for(tag):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        found = find(tag)
        if found:
            return found
        time.sleep(0.05)
    sys.exit(f"burst-probe.py: no tally server with {tag!r} in its environment")


def metrics(bind):
    """(write batches, jobs in them, POSTs answered 201) so far."""
    text = urllib.request.urlopen(f"http://{bind}/metrics", timeout=2).read().decode()
    one = lambda name: float(re.search(rf"^{name} (\S+)", text, re.M).group(1))
    posts = re.findall(r'^tally_http_requests_total\{method="POST".*status="201"\} (\S+)', text, re.M)
    return (
        one("tally_write_batch_size_count"),
        one("tally_write_batch_size_sum"),
        sum(map(float, posts)),
    )


def until_posting(bind):
    last = metrics(bind)[2]
    deadline = time.time() + WAIT
    while time.time() < deadline:
        time.sleep(0.3)
        now = metrics(bind)[2]
        if now - last > 200:
            return
        last = now
    sys.exit("burst-probe.py: the server took no burst of POSTs")


def batches(plain, hooked, seconds):
    servers = {tag: wait_for(tag)[1] for tag in (plain, hooked)}
    time.sleep(1)  # ready
    prev = {tag: metrics(bind) for tag, bind in servers.items()}
    for _ in range(int(seconds)):
        time.sleep(1)
        for tag, bind in servers.items():
            try:
                cur = metrics(bind)
            except OSError:
                continue  # stopped
            count, jobs, posts = (c - p for c, p in zip(cur, prev[tag]))
            prev[tag] = cur
            if posts > 50:
                print(
                    f"{tag:14} POSTs/s {posts:6.0f}  batches/s {count:5.0f}  "
                    f"jobs/batch {jobs / max(count, 1):5.2f}  other jobs/s {jobs - posts:4.0f}",
                    flush=True,
                )


def perf(tag, seconds, out):
    pid, bind = wait_for(tag)
    time.sleep(1)
    until_posting(bind)
    print(f"burst-probe.py: recording while pid {pid} takes POSTs", flush=True)
    subprocess.run(["perf", "record", "-a", "-g", "-F", "999", "-o", out, "--", "sleep", seconds], check=True)


def set_slice(tid, ns):
    """SCHED_OTHER with an EEVDF slice of `ns` (sched_setattr, x86_64 syscall 314)."""
    import ctypes

    class Attr(ctypes.Structure):
        _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32),
                    ("flags", ctypes.c_uint64), ("nice", ctypes.c_int32),
                    ("prio", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                    ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    attr = Attr(size=ctypes.sizeof(Attr), policy=0, runtime=ns)
    if libc.syscall(314, int(tid), ctypes.byref(attr), 0) != 0:
        sys.exit(f"burst-probe.py: sched_setattr on {tid}: {os.strerror(ctypes.get_errno())}")


def policy(tag, mode):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        found = find(tag)
        threads = os.listdir(f"/proc/{found[0]}/task") if found else []
        for t in threads:
            try:
                name = open(f"/proc/{found[0]}/task/{t}/comm").read().strip()
            except OSError:
                continue
            if name == "tally-webhooks":
                if mode.startswith("others="):
                    time.sleep(1)  # every thread started
                    others = [u for u in os.listdir(f"/proc/{found[0]}/task") if u != t]
                    for u in others:
                        set_slice(u, int(mode.split("=")[1]))
                    print(f"burst-probe.py: {mode} on {len(others)} threads of pid {found[0]}", flush=True)
                    return
                if mode.startswith("slice="):
                    set_slice(t, int(mode.split("=")[1]))
                elif mode in ("idle", "batch"):
                    subprocess.run(["chrt", f"--{mode}", "-p", "0", t], check=True)
                else:
                    subprocess.run(["renice", "-n", mode, "-p", t], check=True, stdout=subprocess.DEVNULL)
                print(f"burst-probe.py: {mode} on thread {t} of pid {found[0]}", flush=True)
                return
        time.sleep(0.05)
    sys.exit(f"burst-probe.py: no webhook sender thread in a server with {tag!r}")


def main():
    usage = __doc__.split("\n\n")[1]
    args = sys.argv[1:]
    if args[:1] == ["batches"] and len(args) == 4:
        batches(args[1], args[2], args[3])
    elif args[:1] == ["perf"] and len(args) == 4:
        perf(args[1], args[2], args[3])
    elif args[:1] == ["policy"] and len(args) == 3:
        policy(args[1], args[2])
    else:
        sys.exit(f"usage:\n{usage}")


if __name__ == "__main__":
    main()
