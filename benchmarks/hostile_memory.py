"""The server's memory under hostile requests: a real `egide serve`, its resident memory sampled
every 20 ms while each kind of hostile input is sent, then compared with a ceiling.

    .venv/bin/python benchmarks/hostile_memory.py [--ceiling-mb 2048] [--clients 8]

Phases (each must be answered 4xx — never a 5xx — and the server must keep serving):
  1. a 20 KB .keras declaring an 8192x8192x3 input (refused at upload, 413);
  2. `--clients` concurrent /predict requests of four 6000x6000 PNGs each (about 35 KB each);
  3. `--clients` concurrent /predict requests of two 4000x4000 PNGs each (within the per-image
     bound: decoded, two requests at a time);
  4. a zip bomb as a data set (one entry unpacking to 2 GB of zeros);
  5. JSON bodies: 100,000 nested brackets, NaN, 3 MB of spaces.
Prints per phase the statuses and the peak resident memory above the idle server, and exits 1
when a 5xx was answered or the peak exceeds the ceiling.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from egide.lab.server_process import running_server

sys.path.insert(0, str(Path(__file__).parent))
from web import Client, multipart  # noqa: E402  (the web benchmark's stdlib-only client)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Samples a process's resident memory in a thread; `.peak` since the last reset."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = rss_mb(self.pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 40).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def huge_model() -> bytes:
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    model = keras.Sequential([keras.Input((8192, 8192, 3)), keras.layers.Conv2D(1, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    path = Path(tempfile.mkdtemp()) / "huge.keras"
    model.save(path)
    return path.read_bytes()


def zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("cls/a.png", "w", force_zip64=True) as entry:
            block = b"\0" * (1 << 24)
            for _ in range(128):  # 2 GB of zeros
                entry.write(block)
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ceiling-mb", type=float, default=2048, help="allowed peak above idle (MB)")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    model_bytes, bomb = huge_model(), zip_bomb()
    big, large = png(6000, 6000), png(4000, 4000)
    with running_server(Path(tempfile.mkdtemp()) / "lab") as server:
        client = Client(server.port)
        demo, ctype = multipart({"model": "brain-tumor-cnn"}, [("image", "a.png", png(64, 64))])
        assert client.request("POST", "/api/v1/predict", demo, {"Content-Type": ctype})[0] == 200  # warm
        idle = rss_mb(server.pid)
        watch = PeakMemory(server.pid)

        def concurrent(files):
            body, ctype = multipart({"model": "brain-tumor-cnn"}, files)

            def one(_):
                own = Client(server.port)
                try:
                    return own.request("POST", "/api/v1/predict", body, {"Content-Type": ctype})[0]
                finally:
                    own.close()

            with ThreadPoolExecutor(args.clients) as pool:
                return list(pool.map(one, range(args.clients)))

        def upload(path, name, payload):
            body, ctype = multipart({}, [("file", name, payload)])
            return [client.request("POST", path, body, {"Content-Type": ctype})[0]]

        def json_bodies():
            out = []
            for raw in (b"[" * 100_000, b'{"kind": "evaluate", "config": {"clip": [NaN, 1]}}', b" " * 3_000_000):
                out.append(client.request("POST", "/api/v1/jobs", raw, {"Content-Type": "application/json"})[0])
            return out

        phases = [
            ("8192x8192x3 model upload", lambda: upload("/api/v1/models", "huge.keras", model_bytes)),
            (f"{args.clients} x /predict, four 6000x6000 PNGs", lambda: concurrent([("image", f"{i}.png", big) for i in range(4)])),
            (f"{args.clients} x /predict, two 4000x4000 PNGs", lambda: concurrent([("image", f"{i}.png", large) for i in range(2)])),
            ("zip bomb data set (2 GB unpacked)", lambda: upload("/api/v1/datasets", "bomb.zip", bomb)),
            ("hostile JSON bodies", json_bodies),
        ]
        rows, failed = [], False
        for name, send in phases:
            watch.reset()
            statuses = send()
            peak = watch.peak - idle
            errors = [s for s in statuses if s >= 500 and s != 503]
            failed |= bool(errors) or peak > args.ceiling_mb
            rows.append((name, dict(Counter(statuses)), peak))
        watch.stop()
        alive = client.request("POST", "/api/v1/predict", demo, {"Content-Type": ctype})[0] == 200
        client.close()

    print(f"idle server: {idle:.0f} MB resident; ceiling {args.ceiling_mb:.0f} MB above idle")
    width = max(len(r[0]) for r in rows)
    for name, statuses, peak in rows:
        print(f"{name:<{width}}  statuses {statuses}  peak {peak:+.0f} MB")
    print(f"still serving afterwards: {alive}")
    ok = not failed and alive
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
