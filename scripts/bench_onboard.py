#!/usr/bin/env python3
"""Onboarding benchmark: POST /business/onboard with 50 locations, 200 staff and 50,000
clients, then poll the status until completed. Prints the time to accept (HTTP 202) and the
time until the import completed, per run. Run by `scripts/bench onboard`."""
import argparse, json, time, urllib.request

def payload(business_id, clients, staff, locations):
    return {
        "business_id": business_id, "name": f"Bench Spa {business_id}", "timezone": "America/New_York",
        "locations": [{"id": l, "name": f"Location {l}", "phone_number": f"+1415300{l:04d}",
                       "email": f"loc{l}@bench.example", "timezone": "America/New_York"} for l in range(1, locations + 1)],
        "staff": [{"id": s, "first_name": "Staff", "last_name": str(s), "email": f"staff{s}@bench.example",
                   "location_ids": [1 + s % locations, 1 + (s + 1) % locations]} for s in range(1, staff + 1)],
        "clients": [{"id": c, "first_name": "Client", "last_name": str(c), "email": f"client{c}@bench.example",
                     "phone": f"+1415{2000000 + c:07d}", "client_type": "client", "location_id": 1 + c % locations,
                     "sms_opt_in": True, "email_opt_in": c % 3 != 0} for c in range(1, clients + 1)],
    }

def call(url, key, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body,
                                 headers={"X-API-KEY": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, json.loads(r.read())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50_000)
    args = ap.parse_args()
    results = []
    for run in range(args.runs):
        # Fresh businesses, then the last run onboards the first one again (the update path).
        business_id = 1001 + run if run < args.runs - 1 else 1001
        body = json.dumps(payload(business_id, args.clients, 200, 50)).encode()
        started = time.monotonic()
        status, accepted = call(f"{args.url}/business/onboard", args.key, "POST", body)
        assert status == 202, (status, accepted)
        accepted_at = time.monotonic() - started
        while True:
            _, st = call(f"{args.url}/business/{business_id}/onboarding-status", args.key)
            if st["request_id"] == accepted["request_id"] and st["status"] in ("completed", "failed"):
                break
            time.sleep(0.05)
        total = time.monotonic() - started
        assert st["status"] == "completed" and st["counts"]["clients"] == args.clients and not st["errors"], st
        kind = "re-onboard (update)" if run == args.runs - 1 and run > 0 else "new business"
        print(f"run {run + 1}: {kind:<20} {len(body) / 1e6:5.1f} MB  accepted in {accepted_at:5.2f} s  completed in {total:5.2f} s")
        results.append(total)
    results.sort()
    print(f"median completed in {results[len(results) // 2]:.2f} s over {len(results)} runs")

if __name__ == "__main__":
    main()
