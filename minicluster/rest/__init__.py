"""Flink's REST API and a web dashboard over a running cluster.

`json_views` builds Flink's JSON from the typed snapshot (pure functions), `routes` matches a
request to an endpoint (pure), `app` is the ASGI application that joins them to the cluster,
and `server` serves it with hypercorn's trio worker in the cluster's nursery.
"""

from __future__ import annotations

from .app import RestApp
from .server import RestBindError, serve_rest

__all__ = ["RestApp", "RestBindError", "serve_rest"]
