"""Starting the Serve application on a Ray cluster (the local one by default)."""

from __future__ import annotations

import logging

from livseg.runtime import init_ray
from livseg.serve.app import build_app
from livseg.serve.security import load_token
from livseg.serve.settings import ServeSettings

APP_NAME = "livseg"
log = logging.getLogger(__name__)


# Serve's controller actor (``ray.serve._private.constants``); ``serve.status()`` cannot tell:
# it returns an empty status whether or not a controller runs.
CONTROLLER = {"name": "SERVE_CONTROLLER_ACTOR", "namespace": "serve"}


def serve_running() -> bool:
    """True when a Serve controller already runs on the connected cluster."""
    import ray

    return CONTROLLER in ray.util.list_named_actors(all_namespaces=True)


def start_app(
    settings: ServeSettings,
    address: str | None = None,
    token: str | None = None,
    *,
    http: bool = True,
    name: str = APP_NAME,
) -> str:
    """Deploy (or update) the app on the cluster at ``address`` (or ``RAY_ADDRESS``, else a
    local instance) and return its base URL. Returns once every replica is ready.

    Without a token the app starts only if this call starts Serve's HTTP proxy itself, on a
    loopback host (a running Serve keeps the address it was started with). ``http=False``
    serves handles only (no route; when this call starts Serve, no HTTP proxy either)."""
    from ray import serve

    token = token or load_token(settings.token_env, settings.token_file)
    if token is None:
        build_app(settings, None, loopback_checked=True)  # an open host: refuse before Ray
    init_ray(address)
    fresh = not serve_running()
    if http:
        serve.start(http_options={"host": settings.host, "port": settings.port})
    elif fresh:
        serve.start(proxy_location="Disabled")
    app = build_app(settings, token, loopback_checked=fresh)
    serve.run(app, name=name, route_prefix="/" if http else None)
    return f"http://{settings.host}:{settings.port}" if http else ""


def stop_app(name: str = APP_NAME) -> None:
    """Delete the app (its replicas stop); Serve itself keeps running for other apps."""
    from ray import serve

    serve.delete(name)
