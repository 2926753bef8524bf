#!/usr/bin/env python3
"""Read-path benchmark (run by `scripts/bench read`), on Postgres with a release build.

Seeds one business with 50 locations, 200 staff, 50,000 clients, 100,000 conversations and
1,000,000 messages (bulk SQL), starts one `omega ingress`, and measures p50/p95/p99 over
--requests sequential requests (one keep-alive connection) for each inbox read: the
conversation list (default, and three filters combined), the filters endpoint, a
conversation's messages page, search within a conversation, business-wide search, the client
list with `q`, and client details. Then it replays one request of each kind with Postgres'
auto_explain on and reports any sequential scan over messages, conversations or clients.
"""
import argparse, http.client, json, os, random, re, subprocess, sys, time

LOCATIONS, STAFF, CLIENTS, CONVERSATIONS, MESSAGES = 50, 200, 50_000, 100_000, 1_000_000
WORDS = ("appointment confirm reminder massage facial booking cancel reschedule today tomorrow "
         "morning afternoon evening thanks please hello gift card voucher balance payment invoice "
         "receipt membership renewal class yoga pilates spin session trainer therapist nails hair "
         "color cut wax brow lash peel laser botox filler consult follow up review rating feedback "
         "parking address directions open closed holiday hours staff team front desk call text "
         "email reply question answer price discount offer promo package bundle credit refund late "
         "early waitlist slot available full sorry great perfect lovely amazing relax calm oil "
         "lavender eucalyptus mint rose citrus hot stone deep tissue swedish prenatal couples "
         "sauna steam pool locker towel robe slippers water tea coffee snack lunch break noon "
         "monday tuesday wednesday thursday friday saturday sunday week month year birthday "
         "anniversary wedding bridal party group private room suite upgrade downgrade change "
         "confirmed pending approved declined expired renewed paused frozen active member guest "
         "new returning regular vip loyalty points reward redeem earn bonus referral friend family").split()
FIRST = "Ada Grace Alan Edsger Barbara Donald Frances Hedy Katherine Margaret Radia Shafi Tim Vint Whitfield Anita Jean Mary Annie Evelyn".split()
LAST = "Lovelace Hopper Turing Dijkstra Liskov Knuth Allen Lamarr Johnson Hamilton Perlman Goldwasser Berners Cerf Diffie Borg Sammet Keller Easley Boyd".split()


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


def psql(db, sql):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def seed(db):
    vocab = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    first = "ARRAY[" + ",".join(f"'{w}'" for w in FIRST) + "]"
    last = "ARRAY[" + ",".join(f"'{w}'" for w in LAST) + "]"
    n = len(WORDS)
    steps = [
        # Columns named: the table grows with migrations (email_domains, m0011).
        "INSERT INTO businesses (id, name, timezone, email_domains, created_at, updated_at) VALUES (1, 'Bench Spa', 'UTC', '[]', now(), now())",
        f"INSERT INTO locations SELECT 1, l, 'Location ' || l, '+1415555' || lpad(l::text, 4, '0'), NULL, 'UTC', now() FROM generate_series(1, {LOCATIONS}) l",
        f"INSERT INTO staff SELECT 1, s, 'Staff' || s, 'Member' || s, 'staff' || s || '@bench.example', NULL, now() FROM generate_series(1, {STAFF}) s",
        f"INSERT INTO staff_locations SELECT 1, s, 1 + s % {LOCATIONS} FROM generate_series(1, {STAFF}) s",
        f"""INSERT INTO clients SELECT 1, c, ({first})[1 + c % {len(FIRST)}], ({last})[1 + (c / {len(FIRST)}) % {len(LAST)}] || c,
               'client' || c || '@bench.example', '+1650' || lpad(c::text, 7, '0'), 'client', 1 + c % {LOCATIONS},
               true, NULL, NULL, true, NULL, NULL, now(), now() FROM generate_series(1, {CLIENTS}) c""",
        # Two conversations per client, at two locations; ids 1..100000. Its messages are the
        # ids i, i + 100000, … i + 900000, the last one its latest.
        f"""INSERT INTO conversations (id, business_id, location_key, client_id, status, assigned_staff_id, unread_count,
               last_message_id, last_activity_at, snoozed_until, created_at, updated_at)
           SELECT i, 1, 1 + ((1 + (i - 1) % {CLIENTS}) + ((i - 1) / {CLIENTS}) * 25) % {LOCATIONS}, 1 + (i - 1) % {CLIENTS},
               (ARRAY['open','open','open','open','open','open','pending','resolved','resolved','snoozed'])[1 + (i * 7) % 10],
               CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % {STAFF} END,
               CASE WHEN i % 7 = 0 THEN 1 + i % 3 ELSE 0 END,
               i + {MESSAGES - CONVERSATIONS}, now() - make_interval(secs => (i::bigint * 7919) % 20000000),
               NULL, now() - interval '400 days', now()
           FROM generate_series(1, {CONVERSATIONS}) i""",
        "DROP INDEX IF EXISTS idx_messages_search",
        f"""INSERT INTO messages (id, business_id, conversation_id, client_id, location_id, channel, direction, category,
               notification_type, sender_type, sent_by, staff_id, provider, provider_message_id, external_id, request_id,
               request_index, subject, body, from_addr, to_addr, cc, bcc, attachments, status, error_code, error_message,
               is_read, metadata, sent_at, delivered_at, created_at, updated_at)
           SELECT m, 1, c.id, c.client_id, c.location_key,
               ch, CASE WHEN m % 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'conversation', NULL,
               CASE WHEN m % 2 = 0 THEN 'client' ELSE 'staff' END, NULL, NULL,
               CASE ch WHEN 'email' THEN 'sendgrid' WHEN 'note' THEN NULL ELSE 'twilio' END, 'P' || m, NULL, NULL, NULL,
               CASE ch WHEN 'email' THEN ({vocab})[1 + (m * 13) % {n}] || ' ' || ({vocab})[1 + (m * 17) % {n}] ELSE NULL END,
               (SELECT string_agg(({vocab})[1 + abs(hashint8(m::bigint * 16 + k)) % {n}], ' ') FROM generate_series(1, 12) k),
               NULL, NULL, '[]', '[]', '[]',
               CASE WHEN m % 2 = 0 THEN 'received' WHEN m % 50 = 1 THEN 'failed' ELSE 'delivered' END, NULL, NULL,
               NOT (m % 2 = 0 AND c.unread_count > 0 AND m > {MESSAGES - 3 * CONVERSATIONS}), '{{}}',
               c.last_activity_at - make_interval(hours => ({MESSAGES} - m) / {CONVERSATIONS}),
               NULL, c.last_activity_at - make_interval(hours => ({MESSAGES} - m) / {CONVERSATIONS}), now()
           FROM generate_series(1, {MESSAGES}) m
           JOIN conversations c ON c.id = 1 + (m - 1) % {CONVERSATIONS}
           CROSS JOIN LATERAL (SELECT (ARRAY['sms','sms','sms','sms','sms','sms','email','email','email','note','voice'])[1 + m % 11] AS ch) x""",
        "CREATE INDEX idx_messages_search ON messages USING GIN (search)",
        """UPDATE conversations c SET channels = x.bits FROM (SELECT conversation_id, bit_or(CASE channel WHEN 'sms' THEN 1
               WHEN 'email' THEN 2 WHEN 'voice' THEN 4 ELSE 8 END) AS bits FROM messages GROUP BY conversation_id) x
           WHERE x.conversation_id = c.id""",
        "SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))",
        "SELECT setval(pg_get_serial_sequence('conversations', 'id'), (SELECT max(id) FROM conversations))",
        "VACUUM ANALYZE",
    ]
    t0 = time.time()
    for sql in steps:
        psql(db, sql)
    counts = psql(db, "SELECT (SELECT count(*) FROM clients) || ' clients, ' || (SELECT count(*) FROM conversations) || ' conversations, ' || (SELECT count(*) FROM messages) || ' messages'")
    print(f"seeded {counts} in {time.time() - t0:.0f} s", flush=True)


class Client:
    def __init__(self, port, key):
        self.port, self.key = port, key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers={"X-API-KEY": self.key})
        r = self.conn.getresponse()
        body = r.read()
        took = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status} {body[:300]!r}")
        return took, body


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def workloads(rng):
    w = lambda: rng.choice(WORDS)
    return [
        ("conversation list (default)", lambda: f"/businesses/1/conversations?page={rng.randint(1, 50)}", 20),
        ("conversation list, 3 filters (status+assignment+location)",
         lambda: f"/businesses/1/conversations?status=open&assignment=assigned&location_id={rng.randint(1, LOCATIONS)}&page={rng.randint(1, 3)}", 20),
        ("filters endpoint", lambda: f"/businesses/1/conversations/filters?staff_id={rng.randint(1, STAFF)}", 20),
        ("conversation messages page", lambda: f"/businesses/1/conversations/{rng.randint(1, CONVERSATIONS)}/messages", 20),
        ("search within a conversation (1 word)", lambda: f"/businesses/1/conversations/{rng.randint(1, CONVERSATIONS)}/messages/search?q={w()}", 25),
        ("business-wide search (2 words)", lambda: f"/businesses/1/messages/search?q={w()}+{w()}", 100),
        ("business-wide search (1 word)", lambda: f"/businesses/1/messages/search?q={w()}", 100),
        ("client list with q (name)", lambda: f"/businesses/1/clients?q={rng.choice(LAST)}{rng.randint(1, 999)}", 20),
        ("client details", lambda: f"/businesses/1/clients/{rng.randint(1, CLIENTS)}", 20),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the database (omega_bench_read) for a next run")
    args = ap.parse_args()
    binary = os.path.abspath("target/release/omega")
    db = "omega_bench_read"
    platform = "omk_benchplatformkey000000000000"
    env = dict(os.environ, OMEGA_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
               OMEGA_REDIS_URL="redis://127.0.0.1:6379", OMEGA_REDIS_PREFIX=f"bench-read-{os.getpid()}",
               OMEGA_SECRET_KEY="MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
               OMEGA_BOOTSTRAP_PLATFORM_KEY=platform, RUST_LOG="warn", OMEGA_DB_MAX_CONNECTIONS="8",
               # One business is the whole load: limits far above reach (each request still
               # pays for its bucket check), so none is refused.
               OMEGA_RATE_LIMIT_READ="10000000", OMEGA_RATE_LIMIT_WRITE="10000000")
    exists = psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"
    if exists and not args.keep:
        psql("postgres", f"DROP DATABASE {db} WITH (FORCE)")
        exists = False
    if not exists:
        psql("postgres", f"CREATE DATABASE {db}")
        sh(f"{binary} migrate", env=env)
        seed(db)
    port = 18900 + os.getpid() % 1000

    def start_ingress():
        p = subprocess.Popen([binary, "ingress"], env=dict(env, OMEGA_LISTEN=f"127.0.0.1:{port}"))
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                return p
            except OSError:
                time.sleep(0.1)
        sys.exit("the ingress did not start")

    ingress = start_ingress()
    try:
        client = Client(port, platform)
        results = {}
        for run in range(args.runs):
            rng = random.Random(run)
            for label, path, target in workloads(rng):
                for _ in range(20):  # warm up
                    client.get(path())
                times = [client.get(path())[0] for _ in range(args.requests)]
                results.setdefault(label, []).append((pct(times, 50), pct(times, 95), pct(times, 99), target))
                p50, p95, p99, _ = results[label][-1]
                print(f"run {run + 1}: {label:<58} p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f} ms", flush=True)
        print(f"\nmedian of {args.runs} runs, {args.requests} sequential requests each (ms):")
        print(f"{'request':<58} {'p50':>6} {'p95':>6} {'p99':>6}  target p95")
        for label, rows in results.items():
            med = lambda i: sorted(r[i] for r in rows)[len(rows) // 2]
            target = rows[0][3]
            print(f"{label:<58} {med(0):6.1f} {med(1):6.1f} {med(2):6.1f}  <= {target} {'ok' if med(1) <= target else 'MISSED'}")

        # Plans: every query these requests run, with auto_explain, looking for full scans.
        ingress.terminate(); ingress.wait()
        log = sorted(f for f in os.listdir("/var/log/postgresql") if f.endswith(".log"))
        log = os.path.join("/var/log/postgresql", log[-1]) if log else None
        if not log:
            print("no Postgres log to read plans from"); return
        psql("postgres", f"ALTER DATABASE {db} SET session_preload_libraries = 'auto_explain'")
        psql("postgres", f"ALTER DATABASE {db} SET auto_explain.log_min_duration = 0")
        try:
            start = os.path.getsize(log)
            ingress = start_ingress()
            client = Client(port, platform)
            rng = random.Random(99)
            for label, path, _ in workloads(rng):
                client.get(path())
            time.sleep(0.5)
            with open(log, errors="replace") as f:
                f.seek(start)
                text = f.read()
        finally:
            psql("postgres", f"ALTER DATABASE {db} RESET session_preload_libraries")
            psql("postgres", f"ALTER DATABASE {db} RESET auto_explain.log_min_duration")
        plans = text.count("Query Text:")
        scans = re.findall(r"Seq Scan on (messages|conversations|clients)\b", text)
        nodes = sorted(set(re.findall(r"(Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan|Seq Scan) (?:Backward )?(?:using \S+ )?on (\w+)", text)))
        with open("target/bench-read-plans.txt", "w") as f:
            f.write(text)
        print(f"\nplans logged: {plans}; scan nodes seen: " + ", ".join(f"{n} on {t}" for n, t in nodes))
        print("sequential scans over messages/conversations/clients: " + (", ".join(scans) if scans else "none")
              + " (full plans: target/bench-read-plans.txt)")
    finally:
        ingress.terminate(); ingress.wait()
        if not args.keep:
            psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
