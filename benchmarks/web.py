"""Web server benchmark: a real `egide serve` process, measured over loopback.

    .venv/bin/python benchmarks/web.py [--requests 100] [--repeats 3] [--workers N] [--json out.json]

Starts `egide serve` on a free 127.0.0.1 port with a temporary instance folder (exactly what
the README's main command runs, on the built-in demo model and data), then, with the standard
library's http.client only (no TensorFlow in this process, so the client steals little CPU):

1. an FGSM attack job on 64 demo test images: POST /api/v1/jobs, then GET its URL every
   `--poll` seconds until it is done; seconds from submit to done. The first job is reported
   apart (it loads the model and data and compiles the attack); the target is judged on the
   median of the next `--repeats` jobs.
2. POST /api/v1/predict of one 64x64 PNG (a demo image, the first clean PNG the FGSM job wrote):
   `--warmup` requests first, then `--requests` timed ones; median and p95 milliseconds.
3. The same /predict from `--clients` (8) concurrent clients, `--requests` each: every answer
   200 (a 503 from the server's bound on concurrent predict work counts as an error), and the
   median and p99 milliseconds.
4. 4 jobs submitted at once (FGSM, PGD, BIM, MIM on 64 images, 10 steps): every one must end
   `done`; the wall time from the first submit to the last done.
5. Cancelling a running job: a PGD job of 100,000 steps on 64 images in one batch (minutes of
   work in that batch), cancelled `--cancel-after` seconds after it starts running; seconds from
   the DELETE to the state `cancelled` (target: under 2 s, i.e. inside the batch).

Prints a table with PASS/FAIL against the targets (median predict < 30 ms, FGSM job < 2 s,
4 concurrent jobs all done, cancel < 2 s) and exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from egide.lab.server_process import running_server

PREDICT_TARGET_MS = 30.0
FGSM_TARGET_S = 2.0
CANCEL_TARGET_S = 2.0
READY_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 300.0


class Client:
    """One keep-alive HTTP/1.1 connection to the server (reopened if the server closes it)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, doc: dict | None = None) -> tuple[int, dict]:
        body = json.dumps(doc).encode() if doc is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else {}

    def close(self) -> None:
        self.conn.close()


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def submit(client: Client, body: dict) -> str:
    status, doc = client.json("POST", "/api/v1/jobs", body)
    if status != 202:
        raise RuntimeError(f"POST /api/v1/jobs answered {status}: {doc}")
    return doc["url"]


def wait_done(client: Client, url: str, poll: float) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status, job = client.json("GET", url)
        if status != 200:
            raise RuntimeError(f"GET {url} answered {status}: {job}")
        if job["state"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} still {job['state']} after {JOB_TIMEOUT_S:.0f} s")
        time.sleep(poll)


def fgsm_job(client: Client, poll: float) -> tuple[float, dict]:
    body = {"kind": "attack", "plugin": "fgsm", "params": {"eps": 4 / 255},
            "model": "brain-tumor-cnn", "data": "brain-tumor-phantom", "split": "test", "limit": 64}
    t0 = time.perf_counter()
    job = wait_done(client, submit(client, body), poll)
    return time.perf_counter() - t0, job


def predict_from_clients(port: int, body: bytes, headers: dict, clients: int, each: int):
    """`clients` threads, each with its own connection, sending `each` /predict requests;
    returns (milliseconds of the 200 answers, statuses of the others)."""
    from concurrent.futures import ThreadPoolExecutor

    def one_client(_):
        own, times, bad = Client(port), [], []
        try:
            for _ in range(each):
                t0 = time.perf_counter()
                status, _data = own.request("POST", "/api/v1/predict", body, headers)
                (times if status == 200 else bad).append((time.perf_counter() - t0) * 1000 if status == 200 else status)
        finally:
            own.close()
        return times, bad

    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one_client, range(clients)))
    return [t for times, _ in outcomes for t in times], [s for _, bad in outcomes for s in bad]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="timed /predict requests (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed /predict requests first (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed FGSM jobs after the first (default 3)")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between two job polls (default 0.02)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--workers", type=int, help="the server's worker threads (default: its own, 1)")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder and server log")
    parser.add_argument("--clients", type=int, default=8, help="concurrent /predict clients (default 8)")
    parser.add_argument("--cancel-after", type=float, default=3.0,
                        help="seconds the long job runs before it is cancelled (default 3)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    print(f"Égide web benchmark: Python {platform.python_version()}, {os.cpu_count()} CPU(s), "
          f"load average {load:.2f}")
    if load > (os.cpu_count() or 1):
        print("warning: the load average exceeds the number of cores; figures will be pessimistic")

    tmp = Path(tempfile.mkdtemp(prefix="egide-web-bench-"))
    t_start = time.perf_counter()
    stack = contextlib.ExitStack()
    workers = ("--workers", str(args.workers)) if args.workers else ()
    server = stack.enter_context(running_server(
        tmp / "lab", args=workers, timeout=READY_TIMEOUT_S, log_path=tmp / "server.log"))
    startup = time.perf_counter() - t_start
    client = Client(server.port)
    results: dict = {"server_start_s": round(startup, 2)}
    ok = True
    try:
        # 1. FGSM jobs on 64 images: the first is cold, the next ones are what a user waits for.
        cold, job = fgsm_job(client, args.poll)
        if job["state"] != "done":
            raise RuntimeError(f"the FGSM job ended {job['state']}: {job['error']}")
        warm = []
        for _ in range(args.repeats):
            seconds, job = fgsm_job(client, args.poll)
            if job["state"] != "done":
                raise RuntimeError(f"the FGSM job ended {job['state']}: {job['error']}")
            warm.append(seconds)
        fgsm_median = statistics.median(warm)
        results["fgsm_job"] = {"cold_s": round(cold, 3), "warm_s": [round(s, 3) for s in warm],
                               "median_s": round(fgsm_median, 3), "attack_s": job["result"]["seconds"]}

        # 2. /predict of one 64x64 demo PNG (the first clean image of that job).
        status, png = client.request("GET", job["artifacts"]["clean-0.png"])
        assert status == 200, status
        body, ctype = multipart({"model": "brain-tumor-cnn"}, [("image", "scan.png", png)])
        headers = {"Content-Type": ctype}
        times = []
        for i in range(args.warmup + args.requests):
            t0 = time.perf_counter()
            status, data = client.request("POST", "/api/v1/predict", body, headers)
            elapsed = time.perf_counter() - t0
            if status != 200:
                raise RuntimeError(f"/predict answered {status}: {data[:500]!r}")
            if i >= args.warmup:
                times.append(elapsed * 1000)
        predict_median, predict_p95 = statistics.median(times), percentile(times, 0.95)
        results["predict_ms"] = {"median": round(predict_median, 2), "p95": round(predict_p95, 2),
                                 "min": round(min(times), 2), "requests": len(times)}

        # 3. The same request from several clients at once.
        concurrent_ms, failures = predict_from_clients(server.port, body, headers, args.clients, args.requests)
        results["predict_concurrent_ms"] = {
            "clients": args.clients, "requests": len(concurrent_ms) + len(failures), "errors": len(failures),
            "median": round(statistics.median(concurrent_ms), 2) if concurrent_ms else None,
            "p99": round(percentile(concurrent_ms, 0.99), 2) if concurrent_ms else None}

        # 4. Four jobs at once: all must finish done.
        bodies = [{"kind": "attack", "plugin": name, "params": {"eps": 4 / 255, **extra}, "limit": 64}
                  for name, extra in (("fgsm", {}), ("pgd", {"steps": 10}), ("bim", {"steps": 10}),
                                      ("mim", {"steps": 10}))]
        t0 = time.perf_counter()
        urls = [submit(client, b) for b in bodies]
        jobs = [wait_done(client, u, args.poll) for u in urls]
        wall = time.perf_counter() - t0
        states = [j["state"] for j in jobs]
        errors = [j["error"] for j in jobs if j["state"] != "done"]
        results["concurrent"] = {"jobs": len(jobs), "states": states, "wall_s": round(wall, 2),
                                 "errors": errors}

        # 5. Cancel a job in the middle of its only batch.
        url = submit(client, {"kind": "attack", "plugin": "pgd", "limit": 64, "batch_size": 64,
                              "params": {"eps": 4 / 255, "steps": 100_000, "early_stop": False}})
        while client.json("GET", url)[1]["state"] == "queued":
            time.sleep(args.poll)
        time.sleep(args.cancel_after)
        t0 = time.perf_counter()
        client.json("DELETE", url)
        cancelled = wait_done(client, url, args.poll)
        cancel_s = time.perf_counter() - t0
        results["cancel"] = {"state": cancelled["state"], "seconds": round(cancel_s, 3),
                             "images_done": cancelled["progress"]["done"]}
    finally:
        client.close()
        stack.close()

    rows = [
        ("server start (ready to answer)", f"{startup:.1f} s", "", ""),
        ("FGSM job, 64 images, first (cold)", f"{cold:.2f} s", "", ""),
        (f"FGSM job, 64 images, median of {len(warm)}", f"{fgsm_median:.2f} s", f"< {FGSM_TARGET_S:g} s",
         "PASS" if fgsm_median < FGSM_TARGET_S else "FAIL"),
        (f"POST /predict 64x64, median of {len(times)}", f"{predict_median:.1f} ms",
         f"< {PREDICT_TARGET_MS:g} ms", "PASS" if predict_median < PREDICT_TARGET_MS else "FAIL"),
        ("POST /predict 64x64, p95", f"{predict_p95:.1f} ms", "", ""),
        (f"POST /predict from {args.clients} clients at once, p99",
         f"{results['predict_concurrent_ms']['p99']} ms", "no errors",
         "PASS" if not failures else f"FAIL ({len(failures)} errors)"),
        (f"4 jobs at once (fgsm, pgd, bim, mim), {args.workers or 1} worker(s)", f"{wall:.2f} s wall",
         "all done", "PASS" if states == ["done"] * 4 else "FAIL"),
        ("cancel a running job inside its one batch", f"{cancel_s:.2f} s", f"< {CANCEL_TARGET_S:g} s",
         "PASS" if cancel_s < CANCEL_TARGET_S and cancelled["state"] == "cancelled" else "FAIL"),
    ]
    ok = all(r[3] != "FAIL" for r in rows)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  {'target':>10}  result")
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>10}  {verdict}")
    for e in errors:
        print(f"job error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"instance folder and server log kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
