#!/usr/bin/env python3
"""Pipeline benchmark (run by `scripts/bench pipeline`), release builds. Each of --runs runs
(default 3) has a fresh database and Redis prefix and measures, with the same wrk settings
(2 threads, --connections, --duration) and the same JSON body:
0. the ceiling: `examples/ceiling.rs` parsing that JSON and answering (one process for the
   whole benchmark, started before the first run); every rate is also printed as a ratio
   to it;
1. ingress accept rate on Postgres + Redis: wrk POSTs /businesses/1/sms/send (one message, a
   business key) to one `omega ingress` (no workers): requests/s, p50/p99, errors, RSS;
   then with a different phone number in each request (the ingress remembers checked
   numbers, so the first measures the remembered case);
2. webhook intake: signed Twilio status callbacks (`/twilio/sms/status`) to the same ingress;
3. end to end: --messages (requests of 1,000) through --workers `omega worker` processes
   with the sandbox provider, until every one is sent and delivered; the processes' logs are
   searched for deadlocks and batches run one by one;
4. backlog (optional, --backlog M): M messages queued with no worker running, then workers
   start: it must drain without a dead job;
5. the embedded default (`omega serve`: SQLite and the SQL queue in one process, nothing set
   but the data dir): --embedded-messages end to end.
Then the medians of the runs. `--only scaled|embedded` runs one deployment.
"""
import argparse, base64, hashlib, hmac, json, os, re, shutil, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

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

def bench_onboarding(clients=1000):
    """Business 1: one location, `clients` clients with numbers +14152000001…"""
    return {"business_id": 1, "name": "Bench", "timezone": "UTC",
            "locations": [{"id": 1, "name": "Main", "phone_number": "+14155550100"}],
            "staff": [], "clients": [{"id": c, "phone": f"+1415{2000000 + c:07d}", "client_type": "client",
                                      "location_id": 1, "sms_opt_in": True, "email_opt_in": True} for c in range(1, clients + 1)]}

def onboard_bench_business(binary, env, base, platform=PLATFORM_KEY, clients=1000):
    """Onboards business 1 (`bench_onboarding`) with a worker run briefly; its new API key."""
    onboard_with_worker(binary, env, base, bench_onboarding(clients), platform)
    return sh(f"{binary} keys create --business 1 --name bench", env=env).strip()

def wait_onboarded(base, business_id, platform=PLATFORM_KEY):
    path = f"{base}/business/{business_id}/onboarding-status"
    for _ in range(600):
        if call(path, platform, method="GET")["status"] == "completed":
            return
        time.sleep(0.1)
    sys.exit(f"business {business_id} was not onboarded within a minute")

def onboard_with_worker(binary, env, base, onboard, platform=PLATFORM_KEY):
    """Onboards a business; onboarding needs a worker, so one runs until it is done."""
    call(f"{base}/business/onboard", platform, onboard)
    w = subprocess.Popen([binary, "worker"], env=env)
    try:
        wait_onboarded(base, onboard["business_id"], platform)
    finally:
        w.terminate(); w.wait()

def tear_down(procs, db, prefix):
    """Stops the processes and drops the run's database and Redis keys."""
    for p in procs:
        if p.poll() is None:
            p.terminate(); p.wait()
    subprocess.run(f"psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS {db} WITH (FORCE)'", shell=True)
    subprocess.run(f"redis-cli --scan --pattern '{{{prefix}:*' | xargs -r redis-cli del > /dev/null", shell=True)

def rate(line):
    return float(line.split(" req/s")[0].replace(",", ""))

def p99_ms(line):
    v = re.search(r"p99 (\S+)", line).group(1)
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)

def wait_listen(port, timeout=10):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"port {port} did not come up")

def log_trouble(path):
    """Deadlocks and batches that fell back to one by one, as the processes logged them."""
    text = open(path, errors="replace").read()
    return text.count("deadlock detected"), text.count("running its items one by one")

def send_all(base, key, n, offset=0):
    """Queues n messages in requests of 1,000 (clients 1…1000 in turn); seconds taken."""
    t0 = time.time()
    per = 1000
    for i in range(0, n, per):
        msgs = [{"client_id": 1 + (offset + i + k) % 1000, "to_number": f"+1415{2000000 + 1 + (offset + i + k) % 1000:07d}",
                 "message": f"message {offset + i + k}"} for k in range(min(per, n - i))]
        call(f"{base}/businesses/1/sms/send", key, {"category": "reminder", "location_id": 1, "messages": msgs})
    return time.time() - t0

def wait_delivered(count_delivered, n, timeout=1800):
    end = time.time() + timeout
    while count_delivered() < n:
        if time.time() > end:
            sys.exit(f"only {count_delivered()} of {n} delivered after {timeout} s")
        # Not more often: each count reads the messages table, work the database then does
        # not do for the workers.
        time.sleep(0.5)

def accept_body():
    return json.dumps({"category": "reminder", "location_id": 1, "messages": [{"client_id": 1, "to_number": "+14152000001", "message": "Your appointment is tomorrow at 3pm"}]})

def accept_lua(key, body):
    return f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-KEY"] = "{key}"\n'

def scaled_run(args, run, binary, ceiling_url, logdir):
    """One run on Postgres + Redis: the ceiling, the ingress's three rates, then end to end."""
    db, prefix = f"omega_bench_{os.getpid()}_{run}", f"bench-{os.getpid()}-{run}"
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    env = bench_env(db, prefix)
    log = open(os.path.join(logdir, f"scaled-{run}.log"), "w")
    procs = []
    r = {}
    try:
        sh(f"{binary} migrate", env=env)
        port = 18700 + os.getpid() % 100
        ingress = subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}"), stderr=log)
        procs.append(ingress)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        key = onboard_bench_business(binary, env, base)

        body = accept_body()
        line, _ = wrk(accept_lua(key, body), ceiling_url, args.connections, args.duration, os.getpid())
        r["ceiling"] = rate(line)
        print(f"run {run}: ceiling (examples/ceiling /json, the same body): {line}", flush=True)

        # 1. Ingress accept rate, the same number each time (the ingress remembers checked numbers).
        line, peak = wrk(accept_lua(key, body), f"{base}/businesses/1/sms/send", args.connections, args.duration, ingress.pid)
        r["accept"], r["accept_p99"], r["rss"] = rate(line), p99_ms(line), peak
        print(f"run {run}: ingress accept: {line}  = {r['accept'] / r['ceiling']:.2f} of the ceiling; ingress RSS peak {peak:.0f} MB", flush=True)
        # A different number in each request (a million, at random), so the memo mostly misses.
        template = body.replace("+14152000001", "NUMBER")
        line, peak = wrk(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-KEY"] = "{key}"\n'
                         f'local template = {json.dumps(template)}\n'
                         'request = function()\n'
                         '  local body = template:gsub("NUMBER", string.format("+14152%06d", math.random(0, 999999)))\n'
                         '  return wrk.format(nil, nil, nil, body)\n'
                         'end\n',
                         f"{base}/businesses/1/sms/send", args.connections, args.duration, ingress.pid)
        r["distinct"], r["distinct_p99"], r["rss"] = rate(line), p99_ms(line), max(r["rss"], peak)
        print(f"run {run}: ingress accept, distinct numbers: {line}  = {r['distinct'] / r['ceiling']:.2f} of the ceiling; RSS peak {peak:.0f} MB", flush=True)

        # Webhook intake: signed Twilio status callbacks (while no worker runs).
        params = [("AccountSid", TWILIO_ACCOUNT), ("From", "+14155550100"), ("MessageSid", "SMbench0000000000000000000000000001"),
                  ("MessageStatus", "delivered"), ("To", "+14152000001")]
        signed = "http://omega.bench/twilio/sms/status" + "".join(k + v for k, v in sorted(params))
        signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
        form = urllib.parse.urlencode(params)
        line, peak = wrk(f'wrk.method = "POST"\nwrk.body = "{form}"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["X-Twilio-Signature"] = "{signature}"\n',
                         f"{base}/twilio/sms/status", args.connections, args.duration, ingress.pid)
        r["webhook"], r["webhook_p99"], r["rss"] = rate(line), p99_ms(line), max(r["rss"], peak)
        print(f"run {run}: webhook intake (/twilio/sms/status, signed): {line}  = {r['webhook'] / r['ceiling']:.2f} of the ceiling; RSS peak {peak:.0f} MB", flush=True)
        # The accept-rate and webhook jobs are cleared out of the way: their messages are not measured.
        sh(f"redis-cli --scan --pattern '{{{prefix}:update_status}}*' | xargs -r redis-cli del")
        sh(f"redis-cli --scan --pattern '{{{prefix}:send_sms}}*' | xargs -r redis-cli del")

        def start_workers():
            # 16 connections each keeps any number of workers here under Postgres's 100.
            ws = [subprocess.Popen([binary, "worker"], env=dict(env, OMEGA_DB_MAX_CONNECTIONS="16"), stderr=log)
                  for _ in range(args.workers)]
            procs.extend(ws)  # stopped on the way out, even after an error
            return ws
        def delivered():
            return int(psql(db, "SELECT COUNT(*) FROM messages WHERE status = 'delivered'"))

        # 2. End to end: workers running, N messages queued, until every one is delivered.
        workers = start_workers()
        before = delivered()
        t0 = time.time()
        pushed = send_all(base, key, args.messages)
        wait_delivered(lambda: delivered() - before, args.messages)
        took = time.time() - t0
        stats = json.loads(sh(f"{binary} jobs stats --json", env=env))
        dead = sum(s["dead"] for s in stats)
        r["e2e"] = args.messages / took
        for w in workers:
            w.terminate(); w.wait()
        log.flush()
        r["deadlocks"], r["fallbacks"] = log_trouble(log.name)
        print(f"run {run}: end to end ({args.workers} workers): {args.messages:,} sent and delivered in {took:.1f} s = "
              f"{r['e2e']:,.0f} msg/s = {r['e2e'] / r['ceiling']:.3f} of the ceiling (queued in {pushed:.1f} s); dead jobs {dead}; "
              f"deadlocks logged {r['deadlocks']}, batches run one by one {r['fallbacks']}", flush=True)
        if args.backlog:
            # The end-to-end workers were stopped above: this backlog waits for new ones.
            before = delivered()
            pushed = send_all(base, key, args.backlog, args.messages)
            t0 = time.time()
            start_workers()
            wait_delivered(lambda: delivered() - before, args.backlog)
            took = time.time() - t0
            dead = sum(s["dead"] for s in json.loads(sh(f"{binary} jobs stats --json", env=env)))
            print(f"run {run}: backlog of {args.backlog:,} (queued in {pushed:.1f} s) then {args.workers} workers: "
                  f"{args.backlog / took:,.0f} msg/s; dead jobs {dead}", flush=True)
    finally:
        tear_down(procs, db, prefix)
        log.close()
    return r

def embedded_run(args, run, binary, ceiling_url, logdir):
    """One run of the embedded default: `omega serve` (SQLite, the SQL queue, one process)."""
    data = tempfile.mkdtemp(prefix="omega-bench-embedded-")
    dbfile = os.path.join(data, "omega.db")
    port = 18800 + os.getpid() % 100
    # The defaults: no database URL or Redis (SQLite and the SQL queue under the data dir).
    env = dict(bench_env("unused", "unused"), OMEGA_DATA_DIR=data, OMEGA_LISTEN=f"127.0.0.1:{port}")
    for setting in ("OMEGA_DATABASE_URL", "OMEGA_REDIS_URL", "OMEGA_REDIS_PREFIX", "OMEGA_DB_MAX_CONNECTIONS"):
        env.pop(setting)
    log = open(os.path.join(logdir, f"embedded-{run}.log"), "w")
    serve = subprocess.Popen([binary, "serve"], env=env, stderr=log)
    r = {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", timeout=60)
        # `serve` runs its own workers.
        call(f"{base}/business/onboard", PLATFORM_KEY, bench_onboarding())
        wait_onboarded(base, 1)
        key = sh(f"{binary} keys create --business 1 --name bench", env=env).strip()
        line, _ = wrk(accept_lua(key, accept_body()), ceiling_url, args.connections, args.duration, os.getpid())
        r["ceiling"] = rate(line)
        print(f"run {run}: ceiling (examples/ceiling /json): {line}", flush=True)
        n = args.embedded_messages
        def delivered():
            c = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True, timeout=30)
            try:
                return c.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").fetchone()[0]
            finally:
                c.close()
        t0 = time.time()
        pushed = send_all(base, key, n)
        wait_delivered(delivered, n)
        took = time.time() - t0
        r["e2e"] = n / took
        log.flush()
        r["deadlocks"], r["fallbacks"] = log_trouble(log.name)
        print(f"run {run}: embedded end to end (omega serve, SQLite): {n:,} sent and delivered in {took:.1f} s = "
              f"{r['e2e']:,.0f} msg/s = {r['e2e'] / r['ceiling']:.3f} of the ceiling (queued in {pushed:.1f} s); "
              f"batches run one by one {r['fallbacks']}", flush=True)
    finally:
        serve.terminate(); serve.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    return r

def median(rs, f):
    return statistics.median(f(r) for r in rs)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--embedded-messages", type=int, default=30_000)
    ap.add_argument("--backlog", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["scaled", "embedded"], default=None)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    logdir = tempfile.mkdtemp(prefix="omega-bench-logs-")
    ceiling_port = 18900 + os.getpid() % 100
    ceiling = subprocess.Popen([os.path.abspath("target/release/examples/ceiling"), f"127.0.0.1:{ceiling_port}"])
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/json"
    scaled, embedded = [], []
    try:
        wait_listen(ceiling_port)
        for run in range(1, args.runs + 1):
            if args.only != "embedded":
                scaled.append(scaled_run(args, run, binary, ceiling_url, logdir))
            if args.only != "scaled":
                embedded.append(embedded_run(args, run, binary, ceiling_url, logdir))
    finally:
        ceiling.terminate(); ceiling.wait()
    print(f"\nmedians of {args.runs} runs ({args.connections} connections, {args.duration}; logs in {logdir}):")
    if scaled:
        print(f"  ceiling (examples/ceiling /json)        {median(scaled, lambda r: r['ceiling']):>9,.0f} req/s")
        for k, label in (("accept", "ingress accept"), ("distinct", "accept, distinct numbers"), ("webhook", "webhook intake, signed")):
            print(f"  {label:<38} {median(scaled, lambda r: r[k]):>9,.0f} req/s = {median(scaled, lambda r: r[k] / r['ceiling']):.2f}"
                  f" of the ceiling; p99 {median(scaled, lambda r: r[k + '_p99']):.1f} ms")
        print(f"  ingress RSS peak                        {max(r['rss'] for r in scaled):>9.0f} MB (largest of the runs)")
        print(f"  end to end ({args.workers} workers, {args.messages:,})     {median(scaled, lambda r: r['e2e']):>9,.0f} msg/s = "
              f"{median(scaled, lambda r: r['e2e'] / r['ceiling']):.3f} of the ceiling; deadlocks {sum(r['deadlocks'] for r in scaled)},"
              f" batches one by one {sum(r['fallbacks'] for r in scaled)} (all runs)")
    if embedded:
        print(f"  embedded end to end ({args.embedded_messages:,})        {median(embedded, lambda r: r['e2e']):>9,.0f} msg/s = "
              f"{median(embedded, lambda r: r['e2e'] / r['ceiling']):.3f} of the ceiling (its own ceiling median "
              f"{median(embedded, lambda r: r['ceiling']):,.0f} req/s)")

if __name__ == "__main__":
    main()
