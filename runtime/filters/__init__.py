"""Built-in HTTP filters, each registered by kind in runtime's registry on import.

YAML listeners name them by kind (`fault`, `rate_limit`, `cors`, `rbac`,
`jwt_authn`, `ext_authz`, ...); the .mdsl compiler constructs them directly. They
are stdlib only, but for jwt_authn's signatures (PyJWT) and ext_authz's gRPC form
(grpcio and xds-protos, imported once a gRPC service is configured).
"""
# importing registers them
from . import (adaptive, breaker, cors, ext_authz, fault, grpc_stats, istio_stats, jwt_authn,  # noqa: F401
               peer_metadata, ratelimit, rbac, system_guard)
from .fault import FaultFilter
from .ratelimit import RateLimitFilter

__all__ = ["FaultFilter", "RateLimitFilter"]
