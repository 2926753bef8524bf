#!/usr/bin/env python3
"""Scheduled-send benchmark (run by `scripts/bench schedule`), on Postgres + Redis with release
builds, each run on a fresh database and Redis prefix:
1. ceiling: N messages sent now (no send_at) through the same ingress and workers: the rate,
   first request to last message sent;
2. scheduled: N messages with send_at all in the same second T (or spread over --spread
   seconds), queued --lead seconds ahead so that all are recorded `scheduled` before T;
   then how late each was sent (messages.sent_at - scheduled_at): p50, p99, max, and the
   rate from T to the last send, also as a ratio to the ceiling.
Medians of --runs runs are printed last.
"""
import argparse, datetime, json, math, os, statistics, subprocess, sys, time

from bench_pipeline import PLATFORM_KEY, bench_env, call, onboard_bench_business, psql, sh, tear_down, wait_http

PER_REQUEST = 1000


def push(base, key, n, send_at=None):
    """Queues n reminders to the 1,000 onboarded clients, PER_REQUEST a request; send_at(i)
    gives message i's time (None: now)."""
    for i in range(0, n, PER_REQUEST):
        msgs = []
        for k in range(i, min(i + PER_REQUEST, n)):
            m = {"client_id": 1 + k % 1000, "to_number": f"+1415{2000001 + k % 1000:07d}", "message": f"reminder {k}"}
            if send_at:
                m["send_at"] = send_at(k)
            msgs.append(m)
        call(f"{base}/businesses/1/sms/send", key, {"category": "reminder", "location_id": 1, "messages": msgs})


def count(db, where):
    return int(psql(db, f"SELECT COUNT(*) FROM messages WHERE {where}"))


def wait_count(db, where, n, timeout):
    end = time.time() + timeout
    while (c := count(db, where)) < n:
        if time.time() > end:
            sys.exit(f"only {c:,} of {n:,} messages reached `{where}` in {timeout} s")
        time.sleep(0.2)


def one_run(binary, args, run):
    db = f"omega_bench_sched_{os.getpid()}_{run}"
    prefix = f"bench-sched-{os.getpid()}-{run}"
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    env = bench_env(db, prefix)
    procs = []
    try:
        sh(f"{binary} migrate", env=env)
        port = 18600 + (os.getpid() + run) % 1000
        ingress = subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}"))
        procs.append(ingress)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        key = onboard_bench_business(binary, env, base)
        procs += [subprocess.Popen([binary, "worker"], env=dict(env, OMEGA_DB_MAX_CONNECTIONS="16"))
                  for _ in range(args.workers)]
        n = args.messages
        sent = "sent_at IS NOT NULL"

        # 1. The ceiling: the same messages, due now.
        t0 = time.time()
        push(base, key, n)
        wait_count(db, sent, n, 600)
        ceiling = n / (time.time() - t0)

        # 2. Scheduled for the same second (or spread), queued --lead seconds ahead.
        start = math.ceil(time.time()) + args.lead
        def send_at(k):
            at = start + (args.spread * k / n if args.spread else 0)
            return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat()
        push(base, key, n, send_at)
        wait_count(db, "status = 'scheduled'", n, args.lead + 60)
        ahead = start - time.time()
        if ahead < 0:
            sys.exit(f"recording {n:,} scheduled messages took past their time; raise --lead")
        wait_count(db, f"scheduled_at IS NOT NULL AND {sent}", n, args.lead + 600)
        late = psql(db, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.99) "
                        "WITHIN GROUP (ORDER BY l), MAX(l), EXTRACT(EPOCH FROM MAX(sent_at)) FROM "
                        "(SELECT EXTRACT(EPOCH FROM sent_at - scheduled_at) AS l, sent_at FROM messages "
                        "WHERE scheduled_at IS NOT NULL) s")
        p50, p99, worst, last = (float(x) for x in late.split("|"))
        early = count(db, "scheduled_at IS NOT NULL AND sent_at < scheduled_at")
        took = max(last - (start + args.spread), 0.001) + args.spread
        rate = n / took
        dead = sum(s["dead"] for s in json.loads(sh(f"{binary} jobs stats --json", env=env)))
        failed = count(db, "status = 'failed'")
        print(f"run {run}: ceiling (sent now) {ceiling:,.0f} msg/s; scheduled: all recorded {ahead:.0f} s before "
              f"their time; lateness p50 {p50:.2f} s  p99 {p99:.2f} s  max {worst:.2f} s; sent early {early}; "
              f"rate {rate:,.0f} msg/s = {rate / ceiling:.2f} of the ceiling; failed {failed}; dead jobs {dead}",
              flush=True)
        return ceiling, p50, p99, worst, rate
    finally:
        tear_down(procs, db, prefix)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--spread", type=float, default=0, help="seconds the send times spread over (0: one second)")
    ap.add_argument("--lead", type=int, default=90, help="seconds between queueing and the send time")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    results = [one_run(binary, args, run) for run in range(1, args.runs + 1)]
    ceiling, p50, p99, worst, rate = (statistics.median(col) for col in zip(*results))
    when = "the same second" if not args.spread else f"{args.spread:g} s"
    print(f"median of {args.runs} runs, {args.messages:,} messages due within {when}, {args.workers} workers: "
          f"ceiling {ceiling:,.0f} msg/s; lateness p50 {p50:.2f} s  p99 {p99:.2f} s  max {worst:.2f} s; "
          f"rate {rate:,.0f} msg/s = {rate / ceiling:.2f} of the ceiling")


if __name__ == "__main__":
    main()
