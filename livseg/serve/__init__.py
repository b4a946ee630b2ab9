"""Serving: the Ray Serve application that hosts the registry's current model over HTTP."""

from livseg.serve.app import REPORT_HEADER, Api, app_builder, build_app
from livseg.serve.model_server import ModelServer, load_model
from livseg.serve.runner import APP_NAME, serve_running, start_app, stop_app
from livseg.serve.security import Forbidden, authorised, confine, load_token, study_key
from livseg.serve.settings import ServeSettings
from livseg.serve.throughput import direct_rate, model_rate, scratch, serve_rate, timed_windows

__all__ = [
    "APP_NAME", "REPORT_HEADER", "Api", "Forbidden", "ModelServer", "ServeSettings",
    "app_builder", "authorised", "build_app", "confine", "direct_rate", "load_model",
    "load_token", "model_rate", "scratch", "serve_rate", "serve_running", "start_app",
    "stop_app", "study_key", "timed_windows",
]  # fmt: skip
