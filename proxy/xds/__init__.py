"""The xDS client: one ADS stream to a control plane (istiod, go-control-plane).

`AdsClient` (ads.py) speaks the protocol, state of the world or delta, and hands
each response's resources, unpacked, to an `XdsSink` (resources.py), which turns
them into configuration and says which ones it rejects. The client owns versions,
nonces, ACK/NACK, subscriptions and reconnects; the sink owns what the resources
mean. Nothing here translates Envoy resources into mosnx configuration.

Importing the package imports none of its modules: a worker process decodes and
translates resources (dynamic.py, resources.py) but never speaks the protocol, so
it must not pay for grpc. The names below load their module on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ads import AdsClient, TypeState, make_node
    from .backoff import Backoff
    from .resources import CDS, EDS, LDS, RDS, SDS, Rejection, XdsSink

_HOME = {"AdsClient": "ads", "TypeState": "ads", "make_node": "ads", "Backoff": "backoff",
         **{n: "resources" for n in ("CDS", "EDS", "LDS", "RDS", "SDS", "Rejection", "XdsSink")}}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = ["AdsClient", "TypeState", "make_node", "Backoff", "Rejection", "XdsSink",
           "LDS", "RDS", "CDS", "EDS", "SDS"]
