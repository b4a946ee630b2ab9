"""The Ray Serve application: a FastAPI ingress (auth, limits, routes) in front of
``ModelServer`` replicas (the model; ``num_gpus`` each on GPU clusters, autoscaled).

Routes (every one but ``/healthz`` needs ``Authorization: Bearer <token>`` when a token is set):

- ``POST /v1/segment``: a ``.nii``/``.nii.gz`` body → the mask as ``.nii.gz`` on the input's
  exact grid; the study report (statistics, QA, model, seconds) in the ``X-Livseg-Report``
  header as JSON;
- ``POST /v1/segment-uri`` ``{"input": URI, "output": URI[, "seg_output": URI,
  "thumbnail_output": URI]}``: a NIfTI file or DICOM series folder, or a list of the DICOM files
  of one series (local or ``s3://``, inside the configured roots), for DICOM input optionally a
  DICOM SEG, and optionally a PNG of the key slice with contours; the replica reads
  and writes storage itself, so volumes never travel through the proxy; returns the report;
- ``GET /v1/model``: the model served (name, version, arch, metrics); ``POST /v1/reload``
  makes the replica that receives it check the registry for a new current version now. Serve
  routes a request to one replica and has no broadcast, so every replica also checks every
  ``reload_interval_s`` (30 s): after a promotion all replicas serve the new version within
  that time, and in-flight studies finish on the model they started with; ``GET /healthz``.

Why no ``@serve.batch``: requests are whole studies of hundreds of slices, which the Segmenter
already batches; batching studies would only add waiting (DESIGN.md: per-slice requests
reached 9 % of the GPU).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures' types
# (``Request``, ``SegmentUri``) at run time, and Serve's ingress wrapper loses string annotations.
import asyncio
import json

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from livseg.config import from_dict, to_dict
from livseg.errors import UsageError
from livseg.runtime import torch_threads
from livseg.serve.model_server import ModelServer
from livseg.serve.security import authorised, load_token, token_digest
from livseg.serve.settings import ServeSettings

# No /docs or /openapi.json: every route but /healthz is behind the token.
api = FastAPI(title="livseg", docs_url=None, redoc_url=None, openapi_url=None)
REPORT_HEADER = "X-Livseg-Report"
MAX_HEADER_TUMOURS = 50  # proxies refuse headers of more than a few kB
MAX_JSON_BYTES = 1 << 20


class SegmentUri(BaseModel):
    input: str | list[str]  # a NIfTI file or DICOM folder, or the files of one DICOM series
    output: str
    seg_output: str | None = None  # DICOM input: also a DICOM SEG here
    thumbnail_output: str | None = None  # a .png of the key slice with contours (for review)


def header_report(report: dict) -> str:
    """The report as compact JSON for a response header, the tumour list capped."""
    tumours = report["statistics"]["tumours"]
    if len(tumours) > MAX_HEADER_TUMOURS:
        statistics = {**report["statistics"], "tumours": tumours[:MAX_HEADER_TUMOURS],
                      "tumours_listed": MAX_HEADER_TUMOURS}  # fmt: skip
        report = {**report, "statistics": statistics}
    return json.dumps(report, separators=(",", ":"))


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPException(413, f"body larger than the limit of {limit / 2**20:.0f} MiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than the limit of {limit / 2**20:.0f} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
@serve.ingress(api)
class Api:
    """HTTP front: checks the token and the body size, forwards studies to ``ModelServer``."""

    def __init__(
        self, model: DeploymentHandle, digest: str | None, max_body_bytes: int, bodies: int
    ):
        self.model = model
        self.digest = digest
        self.max_body_bytes = max_body_bytes
        # Bodies held at once (read, then on their way to a replica): memory stays below
        # bodies × max_body_bytes however many clients post; the others wait their turn.
        self.bodies = asyncio.Semaphore(bodies)

    def _check(self, request: Request) -> None:
        if not authorised(request.headers.get("authorization"), self.digest):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    async def _call(self, method: str, *args) -> dict:
        try:
            return await getattr(self.model, method).remote(*args)
        except (RayActorError, BackPressureError) as exc:  # a replica died or is saturated
            raise HTTPException(503, f"model replica unavailable ({type(exc).__name__}); "
                                "retry", headers={"Retry-After": "1"}) from exc  # fmt: skip

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/model")
    async def model_info(self, request: Request) -> dict:
        self._check(request)
        return await self._call("info")

    @api.post("/v1/reload")
    async def reload(self, request: Request) -> dict:
        self._check(request)
        return await self._call("reload")

    @api.post("/v1/segment")
    async def segment(self, request: Request) -> Response:
        self._check(request)
        async with self.bodies:
            body = await _read_body(request, self.max_body_bytes)
            result = await self._call("segment_body", body)
        if result["status"] != 200:
            return JSONResponse({"detail": result["detail"]}, status_code=result["status"])
        headers = {REPORT_HEADER: header_report(result["report"])}
        return Response(result["mask"], media_type="application/gzip", headers=headers)

    @api.post("/v1/segment-uri")
    async def segment_uri(self, request: Request) -> JSONResponse:
        self._check(request)  # before reading the body: strangers get 401, not a parser
        try:
            job = SegmentUri.model_validate_json(await _read_body(request, MAX_JSON_BYTES))
        except ValidationError as exc:
            raise HTTPException(422, f"expected {{'input': URI, 'output': URI}}: {exc}") from exc
        result = await self._call("segment_uri", job.input, job.output, job.seg_output,
                                  job.thumbnail_output)  # fmt: skip
        if result["status"] != 200:
            return JSONResponse({"detail": result["detail"]}, status_code=result["status"])
        return JSONResponse(result["report"])


def build_app(
    settings: ServeSettings, token: str | None = None, *, loopback_checked: bool = False
) -> serve.Application:
    """The application graph for ``serve.run``. ``token`` (default: from ``token_env`` or
    ``token_file``) guards every route but ``/healthz``. Without one the app is built only when
    the caller started Serve's HTTP proxy itself on a loopback address (``loopback_checked``):
    the proxy's address is Serve's setting, not the app's, so nothing else proves it."""
    token = token or load_token(settings.token_env, settings.token_file)
    if token is None and not (loopback_checked and settings.loopback):
        raise UsageError(
            f"no token is set and HTTP may listen beyond this machine (host={settings.host}, or "
            f"Serve's own http_options): export {settings.token_env} or pass token_file=… "
            "(and put TLS in front of it)"
        )
    fixed = settings.min_replicas == settings.max_replicas
    scaling = (
        {"num_replicas": settings.min_replicas}
        if fixed
        else {"autoscaling_config": {"min_replicas": settings.min_replicas,
                                     "max_replicas": settings.max_replicas,
                                     "target_ongoing_requests": 2}}
    )  # fmt: skip
    model = serve.deployment(ModelServer).options(
        ray_actor_options={"num_cpus": settings.cpus_per_replica,
                           "num_gpus": settings.gpus_per_replica},
        max_ongoing_requests=settings.max_ongoing_requests,
        health_check_period_s=5,
        **scaling,
    )  # fmt: skip
    bound = model.bind(to_dict(settings), torch_threads(settings.cpus_per_replica))
    digest = token_digest(token) if token else None
    return Api.bind(bound, digest, settings.max_body_bytes, settings.bodies_in_flight)


def app_builder(args: dict) -> serve.Application:
    """``serve run livseg.serve.app:app_builder model=… token_file=…`` and Serve config files
    (``import_path: livseg.serve.app:app_builder`` with an ``args:`` block). A token is required:
    the HTTP address is set outside the app there."""
    return build_app(from_dict(ServeSettings, dict(args)))
