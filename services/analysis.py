"""The analysis job. The pipeline itself (media download, image checks and optimisation, N8N, the
result message) is issue 4 and is NOT built yet: until then a queued analysis stays `queued`."""

from __future__ import annotations

import logging

from services.jobs import app_job

log = logging.getLogger(__name__)


@app_job
def run_analysis(analysis_id: int) -> str:
    log.warning("analysis pipeline not built yet (issue 4): analysis stays queued",
                extra={"analysis_id": analysis_id})
    return "pipeline not built"
