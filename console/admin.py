"""Admin pages of the console: the start page; sponsors, purchase requests, staff, tiers, runtime
settings and the audit log use the same services as the admin API."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from console.pages import nav_item, render
from console.session import staff_required
from translations import N_

bp = Blueprint("console_admin", __name__, url_prefix="/console")

nav_item("console_admin.index", N_("Overview"), "admin", order=10)


@bp.get("/admin")
@staff_required("admin")
def index() -> ResponseReturnValue:
    return render("console/admin_index.html")
