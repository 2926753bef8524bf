"""scripts/pause: see the shell wrapper. Prints one line per phase and PASS or FAIL."""
import argparse, json, os, signal, subprocess, sys, threading, time, urllib.error, urllib.request, uuid

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout.strip()

def pids(pattern):
    return [int(p) for p in sh(f"pgrep -x {pattern} || true").split()]

def request(url, key, body, timeout=30):
    """(status, seconds, request_id or None)"""
    started = time.monotonic()
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"X-API-KEY": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, time.monotonic() - started, json.loads(r.read()).get("request_id")
    except urllib.error.HTTPError as e:
        retry_after = e.headers.get("Retry-After")
        return (e.code if e.code != 503 or retry_after else -503), time.monotonic() - started, None
    except Exception:
        return 0, time.monotonic() - started, None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    db, prefix, key = f"omega_pause_{os.getpid()}", f"pause-{os.getpid()}", "omk_pauseplatformkey00000000000"
    sh(f"psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE {db}'")
    port = 19400 + os.getpid() % 500
    env = dict(os.environ, OMEGA_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}", OMEGA_REDIS_URL="redis://127.0.0.1:6379",
               OMEGA_REDIS_PREFIX=prefix, OMEGA_SECRET_KEY="MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
               OMEGA_BOOTSTRAP_PLATFORM_KEY=key, OMEGA_LISTEN=f"127.0.0.1:{port}", RUST_LOG="error")
    procs, paused = [], []
    try:
        sh(f"{binary} migrate", env=env)
        procs.append(subprocess.Popen([binary, "serve"], env=env))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1); break
            except Exception:
                time.sleep(0.1)
        status, _, _ = request(f"{base}/business/onboard", key, {"business_id": 1, "name": "Pause", "timezone": "UTC",
            "clients": [{"id": 1, "phone": "+14155550111", "client_type": "client", "sms_opt_in": True, "email_opt_in": True}]})
        assert status == 202, status
        time.sleep(1)
        log, stop = [], threading.Event()
        def client():
            while not stop.is_set():
                body = {"category": "conversation", "messages": [
                    {"client_id": 1, "to_number": "+14155550111", "message": f"pause-{uuid.uuid4()}", "status": "sent"}]}
                sent_at = time.monotonic()
                status, took, request_id = request(f"{base}/businesses/1/sms/record", key, body)
                log.append((sent_at, status, took, request_id))
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads: t.start()
        windows = []
        for name, pattern in [("redis", "redis-server"), ("postgres", "postgres")]:
            time.sleep(2)
            targets = pids(pattern)
            assert targets, f"no {pattern} process"
            paused_at = time.monotonic()
            for p in targets: os.kill(p, signal.SIGSTOP)
            paused[:] = targets
            time.sleep(args.seconds)
            for p in targets: os.kill(p, signal.SIGCONT)
            paused[:] = []
            windows.append((name, paused_at, time.monotonic()))
        time.sleep(3)
        stop.set()
        for t in threads: t.join()
        ok = True
        unanswered = [e for e in log if e[1] in (0,)]
        slow = [e for e in log if e[2] > 2.0]
        bad = [e for e in log if e[1] not in (200, 503)]
        print(f"{len(log)} requests: {sum(1 for e in log if e[1] == 200)} answered 200, "
              f"{sum(1 for e in log if e[1] == 503)} answered 503 with Retry-After, {len(bad)} otherwise, "
              f"{len(slow)} slower than 2 s (slowest {max(e[2] for e in log):.2f} s)")
        ok &= not bad and not slow and not unanswered
        for name, start, end in windows:
            during = [e for e in log if start <= e[0] < end]
            after = sorted((e for e in log if e[0] >= end and e[1] == 200), key=lambda e: e[0])
            recovery = (after[0][0] + after[0][2] - end) if after else float("inf")
            print(f"{name} paused {end - start:.1f} s: {len(during)} requests sent meanwhile, "
                  f"{sum(1 for e in during if e[1] == 503)} of them 503; first 200 {recovery:.2f} s after the resume")
            ok &= recovery < 5.0
        accepted = {e[3] for e in log if e[1] == 200}
        deadline = time.time() + 60
        while time.time() < deadline:
            recorded = int(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT COUNT(*) FROM messages WHERE body LIKE 'pause-%'\""))
            if recorded >= len(accepted): break
            time.sleep(1)
        ids = set(sh(f"psql -h 127.0.0.1 -U postgres -d {db} -Atc \"SELECT DISTINCT request_id FROM messages WHERE body LIKE 'pause-%'\"").split())
        missing, extra = accepted - ids, ids - accepted
        print(f"answered 200: {len(accepted)}; recorded: {len(ids)}; accepted but not recorded: {len(missing)}; recorded but not accepted: {len(extra)}")
        ok &= not missing and not extra
        print("PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)
    finally:
        for p in paused: os.kill(p, signal.SIGCONT)
        for p in procs:
            p.kill(); p.wait()
        subprocess.run(f"psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS {db} WITH (FORCE)'", shell=True)
        subprocess.run(f"redis-cli --scan --pattern '{{{prefix}:*' | xargs -r redis-cli del > /dev/null", shell=True)

if __name__ == "__main__":
    main()
