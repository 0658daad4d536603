"""What the web job tests share: waiting on a state (never a fixed sleep), and waiting, through
the API, for a job to leave the queue."""

import time


def until(condition, timeout=30.0, what="the condition"):
    """Poll condition() until it is true; fail after `timeout` seconds, saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def wait(client, url, timeout=120.0) -> dict:
    """Poll GET `url` until the job is neither queued nor running; return its document."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url).get_json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {url} still {job['state']} after {timeout} s")
