"""Envoy's command operators: each one's value for a known stream, missing values as
None, Envoy's response flags from mosnx's failure details, and bad operators refused."""
from __future__ import annotations

import json
import socket

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.log_operators import FLAGS, LONG_FLAG, NAMES, RESPONSE_FLAGS, OperatorError, operator, start_time
from mosnx.runtime.routes import Route, RouteAction


class Tls:
    sni = "api.test"
    mtls = True
    subject = "CN=client"
    uri_sans = ("spiffe://cluster.local/ns/a/sa/b", "spiffe://x")
    dns_sans = ("client.test",)
    version = "TLSv1.3"


def stream() -> StreamContext:
    c = StreamContext(RequestHead("POST", "/api/v1?x=1", Headers.from_pairs([
        ("host", "api.test"), ("user-agent", "curl/8"), ("x-forwarded-for", "203.0.113.7"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]), scheme="https"),
        listener="l", protocol="HTTP/2", source=("192.0.2.1", 40000), destination=("10.0.0.1", 8443))
    c.response = ResponseHead(503, Headers.from_pairs([("x-envoy-upstream-service-time", "12")]))
    c.response.trailers = Headers.from_pairs([("grpc-status", "14")])
    c.start_wall = 1700000000.0625
    c.bytes_received, c.bytes_sent, c.attempt_count = 11, 22, 1
    c.upstream_address, c.cluster_name = "10.1.0.5:9080", "outbound|9080||reviews"
    c.connection_sni = "api.test"
    c.tls = Tls()
    c.route = Route(name="r1", action=RouteAction(cluster="reviews"))
    c.metadata = {"istio": {"policy": "allow", "n": 3, "deep": {"k": [1, 2]}}}
    c.filter_state = {"wasm.upstream_peer": "peer-1"}
    return c


def value(text: str, c: StreamContext | None = None):
    name, _, rest = text.partition("(")
    arg, length = None, None
    if rest:
        arg, _, tail = rest.rpartition(")")
        if tail.startswith(":"):
            length = int(tail[1:])
    elif ":" in name:
        name, _, n = name.partition(":")
        length = int(n)
    return operator(name, arg, length).get(c or stream())


@pytest.mark.parametrize("op, want", [
    ("REQ(:PATH)", "/api/v1?x=1"), ("REQ(:METHOD)", "POST"), ("REQ(:AUTHORITY)", "api.test"), ("REQ(HOST)", "api.test"),
    ("REQ(:SCHEME)", "https"), ("REQ(USER-AGENT)", "curl/8"), ("REQ(X-NONE)", None),
    ("REQ(X-ENVOY-ORIGINAL-PATH?:PATH)", "/api/v1?x=1"), ("REQ(USER-AGENT?:PATH)", "curl/8"),
    ("REQ(USER-AGENT):3", "cur"), ("REQ_WITHOUT_QUERY(:PATH)", "/api/v1"),
    ("RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)", "12"), ("RESP(:STATUS)", "503"), ("RESP(X-NONE)", None),
    ("TRAILER(GRPC-STATUS)", "14"),
    ("RESPONSE_CODE", 503), ("BYTES_RECEIVED", 11), ("BYTES_SENT", 22), ("PROTOCOL", "HTTP/2"),
    ("UPSTREAM_HOST", "10.1.0.5:9080"), ("UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "10.1.0.5"),
    ("UPSTREAM_REMOTE_PORT", "9080"), ("UPSTREAM_CLUSTER", "outbound|9080||reviews"),
    ("UPSTREAM_CLUSTER_RAW", "outbound|9080||reviews"), ("UPSTREAM_LOCAL_ADDRESS", None),
    ("UPSTREAM_TRANSPORT_FAILURE_REASON", None), ("UPSTREAM_REQUEST_ATTEMPT_COUNT", 1),
    ("DOWNSTREAM_REMOTE_ADDRESS", "192.0.2.1:40000"), ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "192.0.2.1"),
    ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS", "192.0.2.1:40000"), ("DOWNSTREAM_REMOTE_PORT", 40000),
    ("DOWNSTREAM_LOCAL_ADDRESS", "10.0.0.1:8443"), ("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "10.0.0.1"),
    ("DOWNSTREAM_LOCAL_PORT", 8443), ("REQUESTED_SERVER_NAME", "api.test"), ("ROUTE_NAME", "r1"),
    ("DOWNSTREAM_PEER_URI_SAN", "spiffe://cluster.local/ns/a/sa/b,spiffe://x"),
    ("DOWNSTREAM_PEER_DNS_SAN", "client.test"), ("DOWNSTREAM_PEER_SUBJECT", "CN=client"),
    ("DOWNSTREAM_TLS_VERSION", "TLSv1.3"), ("DOWNSTREAM_TLS_CIPHER", None),
    ("CONNECTION_ID", None), ("CONNECTION_TERMINATION_DETAILS", None), ("REQUEST_DURATION", None),
    ("RESPONSE_DURATION", None), ("RESPONSE_CODE_DETAILS", "via_upstream"), ("RESPONSE_FLAGS", None),
    ("TRACE_ID", "4bf92f3577b34da6a3ce929d0e0e4736"), ("HOSTNAME", socket.gethostname()),
    ("DYNAMIC_METADATA(istio:policy)", "allow"), ("DYNAMIC_METADATA(istio:n)", 3),
    ("DYNAMIC_METADATA(istio:deep)", '{"k":[1,2]}'), ("DYNAMIC_METADATA(istio:none)", None),
    ("DYNAMIC_METADATA(nope:x)", None), ("FILTER_STATE(wasm.upstream_peer)", "peer-1"),
    ("FILTER_STATE(wasm.upstream_peer:PLAIN)", "peer-1"), ("FILTER_STATE(other)", None),
    ("START_TIME", "2023-11-14T22:13:20.062Z"), ("START_TIME(%Y/%m/%d %H:%M:%S)", "2023/11/14 22:13:20"),
    ("START_TIME(%s.%6f)", "1700000000.062500"), ("START_TIME(%f)", "062500000"),
])
def test_each_operator_reads_the_stream(op, want):
    assert value(op) == want


def test_missing_facts_before_a_response():
    c = StreamContext(RequestHead("GET", "/", Headers()))
    assert value("RESPONSE_CODE", c) == 0 and value("RESPONSE_CODE_DETAILS", c) is None
    assert value("UPSTREAM_HOST", c) is None and value("ROUTE_NAME", c) is None
    assert value("DOWNSTREAM_REMOTE_ADDRESS", c) is None and value("TRACE_ID", c) is None
    assert value("DOWNSTREAM_PEER_URI_SAN", c) is None and value("TRAILER(X)", c) is None
    assert isinstance(value("DURATION", c), int)


def test_ipv6_addresses_are_bracketed():
    c = StreamContext(RequestHead("GET", "/", Headers()), source=("::1", 5000))
    c.upstream_address = "[fd00::5]:80"
    assert value("DOWNSTREAM_REMOTE_ADDRESS", c) == "[::1]:5000"
    assert value("UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", c) == "fd00::5"


@pytest.mark.parametrize("detail, flags, details", [
    ("route_not_found", "NR", "route_not_found"),
    ("cluster_not_found", "NC", "cluster_not_found"),
    ("no_healthy_upstream", "UH", "no_healthy_upstream"),
    ("upstream_connect_failure", "UF", "upstream_reset_before_response_started{connection_failure}"),
    ("upstream_rq_overflow", "UO", "upstream_reset_before_response_started{overflow}"),
    ("upstream_response_timeout", "UT", "response_timeout"),
    ("stream_idle_timeout", "SI", "stream_idle_timeout"),
    ("downstream_remote_disconnect", "DC", "downstream_remote_disconnect"),
    ("upstream_reset_before_response_started", "UC",
     "upstream_reset_before_response_started{connection_termination}"),
    ("upstream_protocol_error", "UPE", "upstream_reset_before_response_started{protocol_error}"),
    ("rate_limited", "RL", "local_rate_limited"),
    ("fault_abort", "FI", "fault_filter_abort"),
    ("invalid_url", "DPE", "http1.codec_error"),
    ("filter_failure", None, "filter_failure"),
])
def test_failure_details_become_envoys_flags(detail, flags, details):
    c = stream()
    c.error_detail = detail
    assert value("RESPONSE_FLAGS", c) == flags
    assert value("RESPONSE_CODE_DETAILS", c) == details
    assert value("RESPONSE_FLAGS_LONG", c) == (LONG_FLAG[flags] if flags else None)


def test_an_upstream_failure_after_retries_ran_out_adds_urx():
    c = stream()
    c.error_detail, c.attempt_count = "upstream_connect_failure", 3
    assert value("RESPONSE_FLAGS", c) == "UF,URX"
    assert value("RESPONSE_FLAGS_LONG", c) == "UpstreamConnectionFailure,UpstreamRetryLimitExceeded"


def test_the_flag_table_speaks_envoys_letters():
    assert {f for f, _ in FLAGS.values() if f} <= {s for s, _ in RESPONSE_FLAGS}
    assert len(RESPONSE_FLAGS) == len(LONG_FLAG)


def test_every_operator_name_binds_and_reads_without_raising():
    args = {"REQ": ":PATH", "RESP": "X", "TRAILER": "X", "REQ_WITHOUT_QUERY": ":PATH", "DYNAMIC_METADATA": "istio",
            "FILTER_STATE": "k", "ENVIRONMENT": "PATH", "START_TIME": None}
    for name in NAMES:
        for c in (stream(), StreamContext(RequestHead("GET", "/", Headers()))):
            v = operator(name, args.get(name), None).get(c)
            assert v is None or isinstance(v, (str, int, float)), name
            json.dumps(v)


def test_the_start_time_cache_follows_the_second():
    g = start_time("%H:%M:%S.%3f")
    c = StreamContext(RequestHead("GET", "/", Headers()))
    c.start_wall = 10.5
    assert g(c) == "00:00:10.500"
    c.start_wall = 11.25
    assert g(c) == "00:00:11.250"


@pytest.mark.parametrize("name, arg, length, where, message", [
    ("NOPE", None, None, "name", 'unknown command operator "NOPE"'),
    ("RESPONSE_CODEZ", None, None, "name", 'did you mean "RESPONSE_CODE"?'),
    ("REQ", None, None, "name", "REQ needs a header name"),
    ("REQ", "a?b?c", None, "arg", "is not a header name"),
    ("REQ", "", None, "name", "REQ needs a header name"),
    ("DURATION", None, 3, "length", "DURATION is a number"),
    ("PROTOCOL", "x", None, "arg", "PROTOCOL takes no argument"),
    ("DYNAMIC_METADATA", None, None, "name", "needs a namespace"),
    ("DYNAMIC_METADATA", "a::b", None, "arg", "is not NAMESPACE"),
    ("FILTER_STATE", "k:RAW", None, "arg", "is not KEY, KEY:PLAIN or KEY:TYPED"),
    ("ENVIRONMENT", None, None, "name", "needs a variable name"),
])
def test_bad_operators_say_what_and_where(name, arg, length, where, message):
    with pytest.raises(OperatorError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")) as e:
        operator(name, arg, length)
    assert e.value.where == where
