#!/usr/bin/env python3
"""CPU per thread of a running tally server, once a second: for finding which thread a
scenario keeps busy (a thread at 100 % of a core is a bottleneck however idle the
machine). Reads /proc only.

    bench/thread-cpu.py TAG SECONDS

Waits (up to 5 minutes) for a process whose environment holds TALLY_BIND and TAG (for
the webhooks harness, the hooked server's database path holds `hooked-sqlite` or
`tally_bench_webhooks_hooked`), then for SECONDS prints, each second the process used
more than a fifth of a core, its total and its busiest threads in percent of one core
(threads by name: the main thread carries the binary's name, the webhook sender
`tally-webhooks`, SQLite connections `sqlx-sqlite-wor…`, actix workers `actix-rt…`).
"""
import os
import sys
import time

USER_HZ = os.sysconf("SC_CLK_TCK")


def find(tag):
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{p}/environ", "rb").read()
        except OSError:
            continue
        if tag.encode() in env and b"TALLY_BIND" in env:
            return p
    return None


def snapshot(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[t] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return out


def main():
    tag, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.time() + 300
    pid = find(tag)
    while pid is None and time.time() < deadline:
        time.sleep(0.2)
        pid = find(tag)
    if pid is None:
        sys.exit(f"thread-cpu.py: no tally process with {tag!r} in its environment")
    prev, end = snapshot(pid), time.time() + seconds
    while time.time() < end:
        time.sleep(1)
        try:
            cur = snapshot(pid)
        except FileNotFoundError:
            return  # the server stopped
        busy = sorted(
            ((ticks - prev.get(t, (name, ticks))[1]) * 100 // USER_HZ, name)
            for t, (name, ticks) in cur.items()
        )[::-1]
        total = sum(b for b, _ in busy)
        if total > 20:
            top = ", ".join(f"{name} {b}" for b, name in busy[:6] if b > 0)
            print(f"{time.strftime('%H:%M:%S')} total {total} %: {top}", flush=True)
        prev = cur


if __name__ == "__main__":
    main()
