#!/usr/bin/env python3
"""Crash test (run by `scripts/chaos`): 20,000 sends through two `omega worker` processes on
Postgres + Redis, with a local Twilio-shaped sink as the provider. A worker is killed with
SIGKILL at random moments three times (and restarted). Then it checks that every accepted
message is recorded exactly once, every job is acked or dead, and that the sink got every
message at least once, and that no more than --max-duplicates (20) were sent twice: only
provider calls in flight when a worker died may repeat (`workers/src/send.rs`)."""
import argparse, collections, http.server, json, os, random, signal, subprocess, sys, threading, time, urllib.parse, urllib.request, uuid

sends = collections.Counter()
lock = threading.Lock()

class Sink(http.server.BaseHTTPRequestHandler):
    # Like a provider's API: connections kept alive, answers at once.
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        text = form["Body"][0]
        with lock:
            sends[text] += 1
        body = json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    # The default backlog of 5 drops connections under a worker's hundreds of concurrent
    # sends, and the retransmitted SYNs keep calls in flight for seconds.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed worker's connections break mid-answer

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout.strip()

def call(url, key, body=None, method="POST"):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-API-KEY": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--kills", type=int, default=3)
    # Only provider calls in flight at a kill may repeat: at most OMEGA_WORKER_PROVIDER_CALLS
    # (6) per kill.
    ap.add_argument("--max-duplicates", type=int, default=20)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    sink = Server(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    db, prefix, key = f"omega_chaos_{os.getpid()}", f"chaos-{os.getpid()}", "omk_chaosplatformkey00000000000"
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    port = 18900 + os.getpid() % 500
    env = dict(os.environ, OMEGA_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}", OMEGA_REDIS_URL="redis://127.0.0.1:6379",
               OMEGA_REDIS_PREFIX=prefix, OMEGA_SECRET_KEY="MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
               OMEGA_BOOTSTRAP_PLATFORM_KEY=key, OMEGA_LISTEN=f"127.0.0.1:{port}", RUST_LOG="error",
               OMEGA_TWILIO_ACCOUNT_SID="AC00000000000000000000000000000001", OMEGA_TWILIO_AUTH_TOKEN="chaos-token-0123456789",
               OMEGA_TWILIO_API_BASE=f"http://127.0.0.1:{sink.server_address[1]}", OMEGA_QUEUE_VISIBILITY_SECS="5",
               OMEGA_JOB_BACKOFF_BASE_MS="200", OMEGA_JOB_BACKOFF_MAX_MS="2000")
    procs = []
    try:
        sh(f"{binary} migrate", env=env)
        procs.append(subprocess.Popen([binary, "ingress"], env=env))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1); break
            except Exception:
                time.sleep(0.1)
        workers = [subprocess.Popen([binary, "worker"], env=env) for _ in range(2)]
        call(f"{base}/business/onboard", key, {"business_id": 1, "name": "Chaos", "timezone": "UTC",
             "locations": [{"id": 1, "name": "Main", "phone_number": "+14155550100"}],
             "clients": [{"id": c, "phone": f"+1415{2000000 + c:07d}", "client_type": "client", "sms_opt_in": True, "email_opt_in": True} for c in range(1, 1001)]})
        while call(f"{base}/business/1/onboarding-status", key, method="GET")["status"] != "completed":
            time.sleep(0.1)
        accepted = 0
        for i in range(0, args.messages, 1000):
            msgs = [{"client_id": 1 + (i + k) % 1000, "to_number": f"+1415{2000001 + (i + k) % 1000:07d}", "message": f"chaos-{i + k}"}
                    for k in range(min(1000, args.messages - i))]
            accepted += call(f"{base}/businesses/1/sms/send", key, {"category": "reminder", "location_id": 1, "messages": msgs})["accepted"]
        print(f"accepted {accepted} messages")
        for n in range(args.kills):
            time.sleep(random.uniform(1, 4))
            victim = random.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            print(f"kill {n + 1}: SIGKILLed worker {victim} with {len(sends)} messages sent so far")
            workers[victim] = subprocess.Popen([binary, "worker"], env=env)
        deadline = time.time() + 900
        while time.time() < deadline:
            stats = json.loads(sh(f"{binary} jobs stats --json", env=env))
            if all(s["pending"] + s["running"] + s["retrying"] == 0 for s in stats):
                sent = int(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT COUNT(*) FROM messages WHERE provider_message_id IS NOT NULL\""))
                if sent >= accepted or any(s["dead"] for s in stats):
                    break
            time.sleep(1)
        stats = json.loads(sh(f"{binary} jobs stats --json", env=env))
        rows = int(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT COUNT(*) FROM messages\""))
        distinct = int(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT COUNT(DISTINCT body) FROM messages\""))
        unsent = int(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT COUNT(*) FROM messages WHERE provider_message_id IS NULL\""))
        open_jobs = sum(s["pending"] + s["running"] + s["retrying"] for s in stats)
        dead = sum(s["dead"] for s in stats)
        delivered_once = sum(1 for b in (f"chaos-{i}" for i in range(accepted)) if sends[b] >= 1)
        duplicates = sum(c - 1 for c in sends.values() if c > 1)
        print(f"recorded rows {rows} (distinct {distinct}) for {accepted} accepted; unsent {unsent}")
        print(f"jobs still open {open_jobs}, dead {dead}")
        print(f"provider sends {sum(sends.values())}: every message at least once: {delivered_once == accepted}; duplicate sends {duplicates}"
              f" (at most {args.max_duplicates})")
        ok = (rows == accepted == distinct and unsent == 0 and open_jobs == 0 and delivered_once == accepted
              and duplicates <= args.max_duplicates)
        print("PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)
    finally:
        for p in procs + (workers if "workers" in dir() else []):
            p.kill(); p.wait()
        subprocess.run(f"psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS {db} WITH (FORCE)'", shell=True)
        subprocess.run(f"redis-cli --scan --pattern '{{{prefix}:*' | xargs -r redis-cli del > /dev/null", shell=True)

if __name__ == "__main__":
    main()
