"""Starting the Serve application on a Ray cluster (the local one by default)."""

from __future__ import annotations

import logging

from livseg.runtime import init_ray
from livseg.serve.app import build_app
from livseg.serve.settings import ServeSettings

APP_NAME = "livseg"
log = logging.getLogger(__name__)


def start_app(settings: ServeSettings, address: str | None = None) -> str:
    """Deploy (or update) the app on the cluster at ``address`` (or ``RAY_ADDRESS``, else a
    local instance) and return its base URL. Returns once every replica is ready."""
    from ray import serve

    app = build_app(settings)  # refuses an open address without a token before starting Ray
    init_ray(address)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{settings.host}:{settings.port}"


def stop_app() -> None:
    """Delete the app (its replicas stop); Serve itself keeps running for other apps."""
    from ray import serve

    serve.delete(APP_NAME)
