#!/usr/bin/env python3
"""Event fan-out benchmark (run by `scripts/bench events`), on Postgres + Redis with release
builds (one `omega ingress`, --workers `omega worker` processes), each run on a fresh database
and Redis prefix:
1. ceiling: N/2 SMS sent through the sandbox with nobody listening: `message.status_updated`
   events written a second, first request to the last one (each message makes two: sent,
   then delivered as the sandbox reports it);
2. fan-out: the same sends while one webhook endpoint and --readers Server-Sent Events
   readers (examples/event_fanout.rs, a process of its own) receive every
   `message.status_updated`: events/s per receiver (first commit to last receipt), as a ratio
   to the ceiling, and commit-to-receipt p50/p95/p99 for the webhook and across all readers;
   with --pace R the sends are paced to R events a second, which shows the latency when
   omega keeps up rather than the queueing of a burst.
Medians of --runs runs are printed last.
"""
import argparse, os, re, statistics, subprocess, sys, time

from bench_pipeline import bench_env, call, onboard_bench_business, psql, sh, tear_down, wait_http

PER_REQUEST = 1000
TICK = 0.1


def push(base, key, n, pace=0):
    """Sends n messages: as fast as requests of PER_REQUEST go, or (pace: events a second,
    two per message) in small requests every TICK seconds."""
    per = PER_REQUEST if not pace else max(1, int(pace / 2 * TICK))
    start = time.time()
    for r, i in enumerate(range(0, n, per)):
        if pace:
            time.sleep(max(0.0, start + r * TICK - time.time()))
        msgs = [{"client_id": 1 + k % 1000, "to_number": f"+1415{2000001 + k % 1000:07d}", "message": f"note {k}"}
                for k in range(i, min(i + per, n))]
        call(f"{base}/businesses/1/sms/send", key, {"category": "reminder", "location_id": 1, "messages": msgs})


def wait_events(db, n, timeout=600):
    """Until the log holds n `message.status_updated` events."""
    end = time.time() + timeout
    while int(psql(db, "SELECT COUNT(*) FROM events WHERE event_type = 'message.status_updated'")) < n:
        if time.time() > end:
            sys.exit(f"{n:,} events were not written within {timeout} s")
        time.sleep(0.1)


def one_run(binary, args, run):
    db = f"omega_bench_events_{os.getpid()}_{run}"
    prefix = f"bench-events-{os.getpid()}-{run}"
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    env = dict(bench_env(db, prefix), OMEGA_ALLOW_PRIVATE_URLS="true")
    procs = []
    try:
        sh(f"{binary} migrate", env=env)
        port = 18700 + (os.getpid() + run) % 1000
        procs.append(subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}")))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        key = onboard_bench_business(binary, env, base)
        procs += [subprocess.Popen([binary, "worker"], env=env) for _ in range(args.workers)]
        n = args.events

        # 1. The ceiling: the same sends, nobody listening.
        t0 = time.time()
        push(base, key, n // 2)
        wait_events(db, n)
        ceiling = n / (time.time() - t0)

        # 2. The same sends with one webhook endpoint and the readers listening.
        observer = subprocess.Popen([args.observer, base, key, "1", str(args.readers), str(n),
                                     "message.status_updated"], stdout=subprocess.PIPE, text=True)
        procs.append(observer)
        if observer.stdout.readline().strip() != "ready":
            sys.exit("the observer did not start")
        push(base, key, n // 2, args.pace)
        out = observer.stdout.read()
        observer.wait()
        print(f"run {run}: ceiling (nobody listening) {ceiling:,.0f} events/s", flush=True)
        results = [ceiling]
        for side in ("webhook", "streams"):
            line = next(l for l in out.splitlines() if l.startswith(side))
            m = re.search(r"(\d+) receipts; (\d+) events/s.*p50 ([\d.]+) ms  p95 ([\d.]+) ms  p99 ([\d.]+) ms", line)
            if not m:
                sys.exit(f"{side}: {line}")
            receipts, rate, p50, p95, p99 = int(m[1]), float(m[2]), float(m[3]), float(m[4]), float(m[5])
            print(f"  {line} = {rate / ceiling:.2f} of the ceiling", flush=True)
            results += [rate, p50, p95, p99]
        return results
    finally:
        tear_down(procs, db, prefix)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--readers", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pace", type=float, default=0,
                    help="events a second in the fan-out step (0: as fast as omega sends)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    args.observer = os.path.abspath("target/release/examples/event_fanout")
    results = [one_run(binary, args, run) for run in range(1, args.runs + 1)]
    c, hr, h50, h95, h99, sr, s50, s95, s99 = (statistics.median(col) for col in zip(*results))
    paced = f"paced at {args.pace:g} events/s" if args.pace else "as fast as omega sends"
    print(f"median of {args.runs} runs, {args.events:,} events {paced}, {args.workers} workers: ceiling {c:,.0f} events/s; "
          f"webhook {hr:,.0f} events/s = {hr / c:.2f} of the ceiling, commit to receipt p50 {h50:.0f} ms "
          f"p95 {h95:.0f} ms p99 {h99:.0f} ms; {args.readers} SSE readers {sr:,.0f} events/s each = "
          f"{sr / c:.2f}, p50 {s50:.0f} ms p95 {s95:.0f} ms p99 {s99:.0f} ms")


if __name__ == "__main__":
    main()
