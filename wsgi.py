"""Entry point for gunicorn (`gunicorn wsgi:app`)."""

from app import create_app
from services import jobs
from services.worker import start_embedded_worker

app = create_app()
jobs.bind_app(app)  # the app this process's jobs run in

settings = app.extensions["settings"]
if settings.embedded_redis and settings.EMBEDDED_WORKER:
    # No REDIS_URL: the queue lives in this process, so its worker must too (run one web process).
    start_embedded_worker(app)
