"""A runtime setting changed through the admin API is used by a running worker process for its next
job, without a restart (real Redis and a real `flask worker`, as CI runs it)."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select

from app import create_app
from models import Analysis, Farmer, utcnow
from services import quota
from tests.admin_helpers import bearer, token_for
from tests.chat import Farmer as ChatFarmer
from tests.fault_helpers import worker_process as worker
from tests.helpers import REAL_REDIS, make_settings
from tests.stand_ins import N8NStandIn, graph_stand_in
from tests.test_analysis_pipeline import leaf_jpeg

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason="a worker process needs a real Redis (TEST_REDIS_URL)")


def wait_completed(session, analysis_id: int, process) -> Analysis:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        session.expire_all()
        analysis = session.get(Analysis, analysis_id)
        if analysis is not None and analysis.status in {"completed", "failed"}:
            return analysis
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"analysis {analysis_id} not finished in 60 s")


def test_a_running_worker_uses_a_changed_setting_for_its_next_job(app, session, database_url, http_stand_in):
    n8n = http_stand_in(N8NStandIn())
    process = None
    try:
        with graph_stand_in() as graph:
            graph.media["1234567890123456"] = leaf_jpeg()  # 1600x1200
            web = create_app(make_settings(database_url, WHATSAPP_API_BASE=graph.base, N8N_WEBHOOK_URL=n8n.url))
            with web.extensions["db"].session() as s, s.begin():
                quota.seed_tiers(s)
            farmer = ChatFarmer(web, graph, queues=("inbound",))  # analyses are the worker's
            farmer.onboard()
            with web.extensions["db"].session() as s, s.begin():  # room for two analyses today
                farmer_id = s.scalar(select(Farmer.id))
                quota.lock_farmer(s, farmer_id)
                tier = quota.tier_by_code(s, "M")
                assert tier is not None
                quota.add_subscription(s, farmer_id, tier.id, timedelta(days=30), utcnow())
            storage = web.extensions["storage"]
            process = worker(database_url, graph.base, n8n.url, burst=False, queues=("analysis",))

            def analyse() -> tuple[int, int]:
                farmer.photo("domates")
                farmer.taps("Geç")
                farmer.taps("Gönder")
                analysis_id = session.scalar(select(Analysis.id).order_by(Analysis.id.desc()))
                analysis = wait_completed(session, analysis_id, process)
                assert analysis.status == "completed", analysis.failure_reason
                return Image.open(io.BytesIO(storage.get(analysis.image_key))).size

            assert analyse() == (800, 600)
            client = web.test_client()
            headers = bearer(token_for(web, client, "admin"))
            response = client.patch("/api/v1/settings", headers=headers,
                                    json={"image_max_width": 400, "image_max_height": 300})
            assert response.status_code == 200, response.get_json()
            assert analyse() == (400, 300)
            assert process.poll() is None  # the same worker process all along
            web.extensions["db"].engine.dispose()
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
