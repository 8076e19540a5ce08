"""The translators, one per Envoy resource type: pure functions from a decoded
message (and the Findings of where it is) to mosnx's model.

translate_listener(Listener, Findings, routes) -> ListenerConfig
translate_route_config(RouteConfiguration, Findings) -> RouteTable
translate_cluster(Cluster, Findings, assignment) -> ClusterConfig

Each raises Rejected (carrying a Rejection naming the resource and field) for what
cannot be served, and records a warning for what is valid but ignored.
"""
from .clusters import eds_name, is_eds, translate_cluster
from .findings import Findings, Rejected, Rejection, Sink
from .listeners import rds_name, rds_names, translate_listener
from .routes import translate_route_config

__all__ = ["translate_listener", "translate_route_config", "translate_cluster", "Findings", "Rejected",
           "Rejection", "Sink", "rds_name", "rds_names", "eds_name", "is_eds"]
