#!/usr/bin/env python3
"""Measures a running `yunnao demo` (started by run.sh): see run.sh. Standard library only."""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--pid", type=int, required=True)
p.add_argument("--start", type=float, required=True)
p.add_argument("--scale", default="city")
args = p.parse_args()
url = urllib.parse.urlparse(args.base)

# Readings per second the simulated fleet offers at its profiles' intervals (crates/sim KINDS:
# devices, interval s, values per message); the small city reports ten times as often.
FLEET = {
    "city": [(300_000, 600, 1), (500, 300, 1), (100, 300, 1), (200, 300, 2), (300, 600, 4),
             (2_000, 60, 1), (3_000, 300, 3), (5_000, 300, 2), (300, 3600, 4), (500, 900, 3)],
    "small": [(400, 60, 1), (20, 30, 1), (10, 30, 1), (10, 30, 2), (10, 60, 4),
              (20, 6, 1), (40, 30, 3), (40, 30, 2), (10, 360, 4), (40, 90, 3)],
}[args.scale]
OFFERED = sum(n / interval * values for n, interval, values in FLEET)
DEVICES = sum(n for n, _, _ in FLEET)


def request(method, path, headers=None, body=None):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, response.getheaders(), data, elapsed


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def sign_in():
    body = urllib.parse.urlencode({"username": "admin", "password": "yunnao-demo"})
    status, headers, _, _ = request("POST", "/ui/sign-in", {"content-type": "application/x-www-form-urlencoded"}, body)
    cookie = [v for k, v in headers if k.lower() == "set-cookie"][0].split(";")[0]
    token = cookie.split("=", 1)[1]
    return cookie, token


def snapshot(token):
    _, _, data, _ = request("GET", "/ui/snapshot", {"authorization": f"Bearer {token}"})
    return json.loads(data)


def rss_mib(field):
    with open(f"/proc/{args.pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return 0


def latency(path, cookie, n):
    times = []
    for _ in range(n):
        status, _, _, elapsed = request("GET", path, {"cookie": cookie})
        assert status == 200, (path, status)
        times.append(elapsed * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1 if len(times) >= 100 else -1]


def ingestion(token, seconds):
    first = snapshot(token)
    t0 = time.time()
    time.sleep(seconds)
    last = snapshot(token)
    return (last["readings_total"] - first["readings_total"]) / (time.time() - t0)


wait_for("the server", lambda: request("GET", "/health")[0] == 200, 120)
cookie, token = sign_in()


def live_map():
    status, _, data, _ = request("GET", "/", {"cookie": cookie})
    return status == 200 and data.count(b'class="district"') == 10 and snapshot(token)["at"]


wait_for("the first live map", live_map, 60)
print(f"demo start to first live map (10 districts, a live snapshot): {time.time() - args.start:.1f} s (goal ≤ 5 s)")

registered = wait_for("the fleet", lambda: snapshot(token)["devices"] >= DEVICES and time.time(), 900)
print(f"{DEVICES:,} simulated devices registered through the import API {registered - args.start:.0f} s after start")
time.sleep(30)  # let the first reports of every device spread out
rate = ingestion(token, 60)
print(f"ingestion at {args.scale} scale: {rate:,.0f} readings/s against {OFFERED:,.0f} offered by the fleet = {rate / OFFERED:.2f}x")
p50, p99 = latency("/", cookie, 100)
print(f"overview page with the {args.scale} loaded: p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal ≤ 50 ms)")
p50, _ = latency("/ui/plan", cookie, 20)
print(f"plan page: p50 {p50:.1f} ms")
_, _, data, first = request("GET", "/ui/map/districts/370283", {"cookie": cookie})
p50, _ = latency("/ui/map/districts/370283", cookie, 10)
print(f"平度市's unit grids ({json.loads(data)['grids']:,} grids, {len(data) / 1e6:.1f} MB): first {first * 1000:.0f} ms, then p50 {p50:.0f} ms")
print(f"parking occupancy {snapshot(token)['parking_occupancy_pct']}% of {snapshot(token)['parking_reporting']:,} spaces reporting")

# 100 browsers on the live stream for 40 s.
received = [0] * 100
stop = threading.Event()


def browser(i):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/ui/stream", headers={"cookie": cookie})
    response = conn.getresponse()
    while not stop.is_set():
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b"event: snapshot"):
            received[i] += 1
    conn.close()


threads = [threading.Thread(target=browser, args=(i,), daemon=True) for i in range(100)]
for t in threads:
    t.start()
time.sleep(2)
streamed = ingestion(token, 40)
p50s, p99s = latency("/", cookie, 100)
stop.set()
print(f"with 100 live streams open: {streamed:,.0f} readings/s ({streamed / rate:.2f}x of without), every stream got "
      f"{min(received)}–{max(received)} snapshots in ~45 s, overview p50 {p50s:.1f} ms p99 {p99s:.1f} ms")
print(f"yunnao peak memory (VmHWM): {rss_mib('VmHWM')} MiB, now {rss_mib('VmRSS')} MiB (goal ≤ 1 GiB)")
