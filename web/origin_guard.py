"""No cross-site use of a local server.

Without a token the server trusts callers on this machine, and a web page the user visits runs
on this machine too: its scripts can POST to http://127.0.0.1:8000 (a `text/plain` JSON body or
a multipart upload needs no CORS preflight), and through DNS rebinding a name the attacker
controls can even resolve to 127.0.0.1. So, for every request:
  - the Host header must name this server: a loopback name, the address it was bound to, or a
    name in EGIDE_ALLOWED_HOSTS (anything else is DNS rebinding, or a proxy not configured);
  - a state-changing request from a browser must come from this server's own page: its `Origin`
    must be this host, and its `Sec-Fetch-Site` (when sent) "same-origin" or "none". Scripts
    and curl send neither header and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request

from egide.lab.services import is_loopback

from .problems import Problem

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_hosts() -> set[str]:
    """The names besides loopback this server answers to."""
    names = set()
    bound = current_app.config.get("EGIDE_BIND_HOST")
    if bound and bound not in ("0.0.0.0", "::"):
        names.add(bound.strip("[]").lower())
    extra = current_app.config.get("EGIDE_ALLOWED_HOSTS") or ""
    names.update(n.strip().lower() for n in str(extra).split(",") if n.strip())
    return names


def hostname(host: str) -> str:
    """'[::1]:8000' -> '::1'; 'Example.org:80' -> 'example.org'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_request() -> None:
    """Raise a problem for a foreign Host, or a cross-site state-changing request."""
    name = hostname(request.host or "")
    if not is_loopback(name) and name not in allowed_hosts():
        raise Problem(400, "Host not allowed",
                      f"this server answers to loopback names{''.join(', ' + n for n in sorted(allowed_hosts()))}, "
                      f"not {name!r}; "
                      "behind a proxy or under another name, list it in EGIDE_ALLOWED_HOSTS",
                      type="host-not-allowed")
    if request.method not in STATE_CHANGING:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise _cross_site(f"Sec-Fetch-Site is {site!r}")
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or (parts.netloc or "").lower() != (request.host or "").lower():
            raise _cross_site(f"the request comes from {origin}")


def _cross_site(why: str) -> Problem:
    return Problem(403, "Cross-site request refused",
                   f"{why}: this server changes state only for its own page and for scripts",
                   type="cross-site")
