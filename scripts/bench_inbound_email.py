#!/usr/bin/env python3
"""Inbound email intake (run by `scripts/bench inbound-email`), on Postgres + Redis with release
builds: wrk POSTs SendGrid Inbound Parse forms (multipart/form-data, about 20 KB: the text,
HTML of it, headers with a Message-ID unique per request) to one `omega ingress` (no workers:
what is measured is authentication, reading, routing to the business and queueing), for a fixed
time: requests/s, p50/p99, errors, RSS. The ceiling, in the same run with the same wrk settings
and body: `examples/ceiling.rs` reading the same form field by field and answering. Prints
each run and the median of --runs.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from bench_pipeline import bench_env, onboard_with_worker, rate, sh, tear_down, wait_http, wait_listen, wrk

PARSE_TOKEN = "bench-parse-token"
BOUNDARY = "----omegabench7MA4YWxkTrZu0gW"

def form_body(size):
    """A Parse post of about `size` bytes; MSGID is replaced per request."""
    paragraph = ("Hi, could we move my massage on Friday to the afternoon? I can do any time after "
                 "two. Also, is the eucalyptus steam room open this week? Thanks! ")
    text = ""
    while len(text) < size // 2:
        text += paragraph
    html = "<p>" + text.replace(". ", ".</p><p>")[: size // 2 - 7] + "</p>"
    fields = [
        ("from", "Grace Hopper <grace@example.com>"),
        ("to", "Front desk <front@bench.example>"),
        ("subject", "Re: Your visit on Friday"),
        ("headers", "Message-ID: <MSGID@mail.example.com>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"),
        ("envelope", json.dumps({"to": ["front@bench.example"], "from": "grace@example.com"})),
        ("text", text),
        ("html", html),
    ]
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields]
    return "".join(parts) + f"--{BOUNDARY}--\r\n"

def lua(body):
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
            f'local template = {json.dumps(body)}\n'
            'local n = 0\n'
            'request = function()\n'
            '  n = n + 1\n'
            '  local body = template:gsub("MSGID", string.format("bench%d-%d", math.random(0, 1000000000), n))\n'
            '  return wrk.format(nil, nil, nil, body)\n'
            'end\n')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    body = form_body(args.size)
    results = []
    for run in range(1, args.runs + 1):
        db, prefix = f"omega_bench_{os.getpid()}_{run}", f"bench-{os.getpid()}-{run}"
        sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
        env = dict(bench_env(db, prefix), OMEGA_INBOUND_EMAIL_TOKEN=PARSE_TOKEN)
        procs = []
        try:
            sh(f"{binary} migrate", env=env)
            port = 18600 + os.getpid() % 100
            ceiling_port = port + 100
            ceiling = subprocess.Popen([os.path.abspath("target/release/examples/ceiling"), f"127.0.0.1:{ceiling_port}"])
            procs.append(ceiling)
            ingress = subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}"))
            procs.append(ingress)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health")
            onboard = {"business_id": 1, "name": "Bench", "timezone": "UTC",
                       "locations": [{"id": 1, "name": "Front", "email": "front@bench.example"}],
                       "staff": [], "clients": [{"id": 1, "email": "grace@example.com", "client_type": "client",
                                                 "location_id": 1, "sms_opt_in": True, "email_opt_in": True}]}
            onboard_with_worker(binary, env, base, onboard)
            wait_listen(ceiling_port)
            c_line, _ = wrk(lua(body), f"http://127.0.0.1:{ceiling_port}/form", args.connections, args.duration, ceiling.pid)
            line, peak = wrk(lua(body), f"{base}/email/inbound/sendgrid?token={PARSE_TOKEN}", args.connections, args.duration, ingress.pid)
            queued = sh(f"redis-cli xlen '{{{prefix}:process_inbound}}:stream'").strip() or "?"
            c, r = rate(c_line), rate(line)
            p99 = re.search(r"p99 (\S+)", line).group(1)
            results.append((c, r, p99))
            print(f"run {run}: ceiling (examples/ceiling /form, same body) {c_line}", flush=True)
            print(f"run {run}: inbound email (SendGrid Parse, {len(body):,} bytes) {line}  = {r / c:.2f} of the ceiling;"
                  f" ingress RSS peak {peak:.0f} MB; process_inbound stream length {queued}", flush=True)
        finally:
            tear_down(procs, db, prefix)
    c = statistics.median(x[0] for x in results)
    r = statistics.median(x[1] for x in results)
    ratio = statistics.median(x[1] / x[0] for x in results)
    p99s = sorted(x[2] for x in results)
    print(f"median of {args.runs} runs ({args.connections} connections, {args.duration}): ceiling {c:,.0f} req/s; "
          f"inbound email {r:,.0f} req/s = {ratio:.2f} of the ceiling; p99 per run {', '.join(p99s)}")

if __name__ == "__main__":
    main()
