"""The HTTP sessions of our outbound calls (Graph API, N8N)."""

from __future__ import annotations

import requests


def http_session(proxy: str = "") -> requests.Session:
    """A session that does not read the environment on every call: by default requests looks up the
    proxy variables and ~/.netrc for each request, a good part of a send's CPU. The proxy, if any, comes
    from settings (`OUTBOUND_PROXY`)."""
    session = requests.Session()
    session.trust_env = False
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    return session
