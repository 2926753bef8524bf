#!/usr/bin/env python3
"""Pipeline benchmark (run by `scripts/bench pipeline`), on Postgres + Redis with release builds:
1. ingress accept rate: wrk POSTs /businesses/1/sms/send (one message, a business key) for a
   fixed time against one `omega ingress` (no workers): requests/s, p50/p99, errors, RSS;
   then the same with a different phone number in each request (the ingress remembers
   checked numbers, so the first step measures the remembered case);
2. end to end: N messages (requests of 1,000) through `omega worker` processes with the
   sandbox provider into Postgres: messages/s until every one is sent and delivered;
3. backlog (optional, --backlog M): M messages queued with no worker running, then workers
   start: it must drain without a dead job;
4. webhook intake: wrk POSTs Twilio status callbacks (`/twilio/sms/status`, a valid
   X-Twilio-Signature) against the same ingress: requests/s, p50/p99, errors.
"""
import argparse, base64, hashlib, hmac, json, os, re, subprocess, sys, tempfile, time, urllib.parse, urllib.request

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout

def psql(db, sql):
    return sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"{sql}\"").strip()

def call(url, key, body=None, method="POST"):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-API-KEY": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{url} did not come up")

def wrk(lua_text, url, connections, duration, pid):
    """Runs wrk with the given script; returns its summary line fields and the peak RSS of pid."""
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write(lua_text)
    lua.close()
    sh(f"wrk -t1 -c16 -d3s -s {lua.name} {url}")  # warm up
    peak = 0.0
    out = subprocess.Popen(f"wrk -t2 -c{connections} -d{duration} --latency -s {lua.name} {url}",
                           shell=True, stdout=subprocess.PIPE, text=True)
    while out.poll() is None:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.2)
    text = out.stdout.read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1)
    p99 = re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockerr = re.search(r"Socket errors: (.*)", text)
    return (f"{rps:,.0f} req/s  p50 {p50}  p99 {p99}  non-2xx {errors.group(1) if errors else 0}"
            f"  socket errors {sockerr.group(1) if sockerr else 'none'}", peak)

TWILIO_ACCOUNT = "AC00000000000000000000000000000bench"
TWILIO_TOKEN = "bench-auth-token-0123456789"

PLATFORM_KEY = "omk_benchplatformkey000000000000"

def bench_env(db, prefix, platform=PLATFORM_KEY):
    """The environment of every omega process of a benchmark on Postgres + Redis."""
    return dict(os.environ, OMEGA_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
                OMEGA_REDIS_URL="redis://127.0.0.1:6379", OMEGA_REDIS_PREFIX=prefix,
               OMEGA_SECRET_KEY="MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
               OMEGA_BOOTSTRAP_PLATFORM_KEY=platform, RUST_LOG="warn", OMEGA_DB_MAX_CONNECTIONS="32",
               # Webhooks are signed with this account; sends still go to the sandbox.
               OMEGA_TWILIO_ACCOUNT_SID=TWILIO_ACCOUNT, OMEGA_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
               OMEGA_DEFAULT_SMS_PROVIDER="sandbox", OMEGA_PUBLIC_URL="http://omega.bench",
               # One business is the whole load here: its limits are set far above what this
               # machine can reach, so each request still pays for its bucket check (in
               # Redis) but none is refused.
               OMEGA_RATE_LIMIT_SEND="10000000", OMEGA_RATE_LIMIT_WRITE="10000000",
               OMEGA_RATE_LIMIT_READ="10000000")

def onboard_bench_business(binary, env, base, platform=PLATFORM_KEY, clients=1000):
    """Onboards business 1 (one location, `clients` clients with numbers +14152000001…) with
    a worker run briefly; its new API key."""
    onboard = {"business_id": 1, "name": "Bench", "timezone": "UTC",
               "locations": [{"id": 1, "name": "Main", "phone_number": "+14155550100"}],
               "staff": [], "clients": [{"id": c, "phone": f"+1415{2000000 + c:07d}", "client_type": "client",
                                         "location_id": 1, "sms_opt_in": True, "email_opt_in": True} for c in range(1, clients + 1)]}
    onboard_with_worker(binary, env, base, onboard, platform)
    return sh(f"{binary} keys create --business 1 --name bench", env=env).strip()

def onboard_with_worker(binary, env, base, onboard, platform=PLATFORM_KEY):
    """Onboards a business; onboarding needs a worker, so one runs until it is done."""
    call(f"{base}/business/onboard", platform, onboard)
    w = subprocess.Popen([binary, "worker"], env=env)
    path = f"{base}/business/{onboard['business_id']}/onboarding-status"
    for _ in range(600):
        if call(path, platform, method="GET")["status"] == "completed":
            break
        time.sleep(0.1)
    w.terminate(); w.wait()

def tear_down(procs, db, prefix):
    """Stops the processes and drops the run's database and Redis keys."""
    for p in procs:
        if p.poll() is None:
            p.terminate(); p.wait()
    subprocess.run(f"psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS {db} WITH (FORCE)'", shell=True)
    subprocess.run(f"redis-cli --scan --pattern '{{{prefix}:*' | xargs -r redis-cli del > /dev/null", shell=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="15s")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--backlog", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    db = f"omega_bench_{os.getpid()}"
    prefix = f"bench-{os.getpid()}"
    platform = PLATFORM_KEY
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    env = bench_env(db, prefix, platform)
    procs = []
    try:
        sh(f"{binary} migrate", env=env)
        port = 18700 + os.getpid() % 1000
        ingress = subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}"))
        procs.append(ingress)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        key = onboard_bench_business(binary, env, base, platform)

        # 1. Ingress accept rate.
        body = json.dumps({"category": "reminder", "location_id": 1, "messages": [{"client_id": 1, "to_number": "+14152000001", "message": "Your appointment is tomorrow at 3pm"}]})
        line, peak = wrk(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-KEY"] = "{key}"\n',
                         f"{base}/businesses/1/sms/send", args.connections, args.duration, ingress.pid)
        print(f"ingress accept: {line}  ingress RSS peak {peak:.0f} MB ({args.connections} connections, {args.duration})")
        # The same with a different number in most requests (a million numbers, drawn at random), so the
        # ingress's memo of checked phone numbers (ingress/src/validate.rs) mostly misses.
        template = body.replace("+14152000001", "NUMBER")
        line, peak = wrk(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-KEY"] = "{key}"\n'
                         f'local template = {json.dumps(template)}\n'
                         'request = function()\n'
                         '  local body = template:gsub("NUMBER", string.format("+14152%06d", math.random(0, 999999)))\n'
                         '  return wrk.format(nil, nil, nil, body)\n'
                         'end\n',
                         f"{base}/businesses/1/sms/send", args.connections, args.duration, ingress.pid)
        print(f"ingress accept, distinct numbers: {line}  ingress RSS peak {peak:.0f} MB")

        # 4 (run here, while no worker runs). Webhook intake: signed Twilio status callbacks.
        params = [("AccountSid", TWILIO_ACCOUNT), ("From", "+14155550100"), ("MessageSid", "SMbench0000000000000000000000000001"),
                  ("MessageStatus", "delivered"), ("To", "+14152000001")]
        signed = "http://omega.bench/twilio/sms/status" + "".join(k + v for k, v in sorted(params))
        signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
        form = urllib.parse.urlencode(params)
        line, peak = wrk(f'wrk.method = "POST"\nwrk.body = "{form}"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["X-Twilio-Signature"] = "{signature}"\n',
                         f"{base}/twilio/sms/status", args.connections, args.duration, ingress.pid)
        print(f"webhook intake (/twilio/sms/status, signed): {line}  ingress RSS peak {peak:.0f} MB")
        sh(f"redis-cli --scan --pattern '{{{prefix}:update_status}}*' | xargs -r redis-cli del")

        # Clear the accept-rate jobs out of the way: their messages are measured separately.
        sh(f"redis-cli --scan --pattern '{{{prefix}:send_sms}}*' | xargs -r redis-cli del")

        def run_batch(n, label, start_workers_after_push):
            before = int(psql(db, "SELECT COUNT(*) FROM messages"))
            workers = []
            def start_workers():
                # A worker holds few connections (its batches share them): 16 each keeps any
                # number of workers here under Postgres's 100.
                ws = [subprocess.Popen([binary, "worker"], env=dict(env, OMEGA_DB_MAX_CONNECTIONS="16"))
                      for _ in range(args.workers)]
                procs.extend(ws)  # stopped on the way out, even after an error
                return ws
            if not start_workers_after_push:
                workers = start_workers()
            t0 = time.time()
            per = 1000
            for i in range(0, n, per):
                msgs = [{"client_id": 1 + (i + k) % 1000, "to_number": f"+1415{2000000 + 1 + (i + k) % 1000:07d}", "message": f"message {i + k}"} for k in range(min(per, n - i))]
                call(f"{base}/businesses/1/sms/send", key, {"category": "reminder", "location_id": 1, "messages": msgs})
            pushed = time.time() - t0
            if start_workers_after_push:
                t0 = time.time()
                workers = start_workers()
            while True:
                done = int(psql(db, f"SELECT COUNT(*) FROM messages WHERE status = 'delivered'")) - before_delivered[0]
                if done >= n:
                    break
                time.sleep(0.5)
            took = time.time() - t0
            dead = sh(f"{binary} jobs stats --json", env=env)
            stats = json.loads(dead)
            dead_total = sum(s["dead"] for s in stats)
            total = int(psql(db, "SELECT COUNT(*) FROM messages")) - before
            print(f"{label}: {n:,} messages sent and delivered in {took:.1f} s = {n / took:,.0f} messages/s"
                  f" (queued in {pushed:.1f} s; {total:,} rows; dead jobs: {dead_total})")
            before_delivered[0] += n
            for w in workers:
                w.terminate(); w.wait()

        before_delivered = [int(psql(db, "SELECT COUNT(*) FROM messages WHERE status = 'delivered'"))]
        run_batch(args.messages, f"end to end ({args.workers} workers)", False)
        if args.backlog:
            run_batch(args.backlog, f"backlog then {args.workers} workers", True)
    finally:
        tear_down(procs, db, prefix)

if __name__ == "__main__":
    main()
