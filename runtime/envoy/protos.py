"""The generated Envoy API modules, imported so the descriptor pool knows their types.

json_format resolves an Any's "@type" through the default descriptor pool, which
holds only the modules imported so far. The ones mosnx translates are imported
here; ensure_type() imports the package of any other type URL met in a document
(a filter mosnx does not run is still valid Envoy and must decode). Nothing here
is re-declared: every message class comes from xds-protos.
"""
from __future__ import annotations

import importlib
import pkgutil

from google.protobuf import descriptor_pool, struct_pb2  # noqa: F401  (Struct for Any)
from google.protobuf.message import Message

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.service.runtime.v3 import rtds_pb2
from xds.type.v3 import typed_struct_pb2  # noqa: F401

PREFIX = "type.googleapis.com/"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM = PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = PREFIX + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
SCOPED_ROUTE = PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"     # SRDS
VIRTUAL_HOST = PREFIX + "envoy.config.route.v3.VirtualHost"                  # VHDS
RUNTIME = PREFIX + "envoy.service.runtime.v3.Runtime"                         # RTDS
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
UPSTREAM_TLS = PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = PREFIX + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW_BUFFER = PREFIX + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"

# the resource types apply() takes, and their message classes
RESOURCE_TYPES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    SECRET: secret_pb2.Secret,
    SCOPED_ROUTE: scoped_route_pb2.ScopedRouteConfiguration,
    VIRTUAL_HOST: route_components_pb2.VirtualHost,
    RUNTIME: rtds_pb2.Runtime,
}
UpstreamTlsContext = tls_pb2.UpstreamTlsContext
DownstreamTlsContext = tls_pb2.DownstreamTlsContext
Bootstrap = bootstrap_pb2.Bootstrap
HttpConnectionManager = http_connection_manager_pb2.HttpConnectionManager

_tried: set[str] = set()


def ensure_type(type_url: str) -> bool:
    """Whether the pool knows the message `type_url` names, importing the generated
    package that should hold it (envoy.a.b.v3.Name -> every module of envoy/a/b/v3)."""
    name = type_url.rsplit("/", 1)[-1]
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName(name)
        return True
    except KeyError:
        pass
    package = name.rpartition(".")[0]
    if not package or package in _tried or not all(p.isidentifier() for p in package.split(".")):
        return False
    _tried.add(package)
    if package.split(".")[0] not in ("envoy", "xds", "udpa", "google"):
        return False
    try:
        pkg = importlib.import_module(package)
        for m in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if m.name.endswith("_pb2"):
                importlib.import_module(f"{package}.{m.name}")
    except ImportError:
        return False
    try:
        pool.FindMessageTypeByName(name)
        return True
    except KeyError:
        return False
