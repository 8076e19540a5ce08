"""The xDS client: one ADS stream to a control plane (istiod, go-control-plane).

`AdsClient` (ads.py) speaks the protocol, state of the world or delta, and hands
each response's resources, unpacked, to an `XdsSink` (resources.py), which turns
them into configuration and says which ones it rejects. The client owns versions,
nonces, ACK/NACK, subscriptions and reconnects; the sink owns what the resources
mean. Nothing here translates Envoy resources into mosnx configuration.
"""
from __future__ import annotations

from .ads import AdsClient, TypeState, make_node
from .backoff import Backoff
from .resources import CDS, EDS, LDS, RDS, SDS, Rejection, XdsSink

__all__ = ["AdsClient", "TypeState", "make_node", "Backoff", "Rejection", "XdsSink",
           "LDS", "RDS", "CDS", "EDS", "SDS"]
