"""Built-in HTTP filters, each registered by kind in runtime's registry on import.

stdlib only, like the rest of runtime. YAML listeners name them by kind
(`fault`, `rate_limit`, `cors`, ...); the .mdsl compiler constructs them directly.
"""
from . import adaptive, breaker, cors, fault, grpc_stats, istio_stats, peer_metadata, ratelimit, system_guard  # noqa: F401  (importing registers them)
from .fault import FaultFilter
from .ratelimit import RateLimitFilter

__all__ = ["FaultFilter", "RateLimitFilter"]
