"""What the web job tests share: waiting, through the API, for a job to leave the queue."""

import time


def wait(client, url, timeout=120.0) -> dict:
    """Poll GET `url` until the job is neither queued nor running; return its document."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url).get_json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {url} still {job['state']} after {timeout} s")
