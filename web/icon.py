"""`/favicon.svg`: the leaf the farmer's report page and the simulator show in the browser's tab, and
`/favicon.ico` answered 204 (no icon, no error) for a page without a link to one.

Served by this server so each page's Content-Security-Policy (`img-src 'self'`) allows it as it is; a browser
asks every page for an icon, and a 404 there is a console error and a problem document nobody reads.
"""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("icon", __name__)

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    '<circle cx="12" cy="12" r="12" fill="#e8f5e9"/>'
    '<path fill="#2e7d32" d="M12 22c-.6-3.8-.3-7 1-9.6C14.6 9.3 17.6 7.4 21 7c-.2 4.6-2.7 8.3-7.4 9.2-.5 1.7-.7 '
    '3.6-.6 5.8h-1Zm-1.3-7.6C7 14 4.2 11.4 3.6 7.5c3.3.1 6 1.9 7.2 4.4-.3.8-.3 1.6-.1 2.5Z"/></svg>'
)
CACHE = "public, max-age=604800"


@bp.get("/favicon.svg")
def icon() -> Response:
    return Response(ICON, mimetype="image/svg+xml",
                    headers={"Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"})


@bp.get("/favicon.ico")
def no_icon() -> Response:
    return Response(status=204, headers={"Cache-Control": CACHE})
