"""Every stat mosnx exports, with its type, meaning and Envoy counterpart: the one list.

Code makes stats where it counts (Store.counter(name), lists such as
CLUSTER_STATS); this list says what each one means, for docs/metrics.md
(mosnx.reference.metrics renders it, `mosnx docs metrics` prints it). A name holds
<placeholders> for the parts code fills in: `http.<listener>.downstream_rq_total`.
tests/runtime/test_stat_catalog.py reads the source for every place a stat
name is made and fails when one has no line here, or a line here names a stat
nothing makes; so a new stat is one line below, in its section.
"""
from __future__ import annotations

from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
SAME = "="               # envoy: the same name as Envoy's
NONE = ""                # envoy: Envoy has none; mosnx's own


@dataclass(frozen=True, slots=True)
class Stat:
    name: str
    type: str
    meaning: str
    envoy: str = SAME


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    intro: str
    stats: tuple[Stat, ...]


_H = "http.<listener>."
_C = "cluster.<cluster>."
_OD = _C + "outlier_detection."
_E = "<cluster>::<address>::"
_IL = "<Istio labels as reporter=.=source;.;...>;.;"      # runtime.filters.istio_stats

SECTIONS: tuple[Section, ...] = (
    Section("HTTP listeners", "Per `protocol: http` listener, HTTP/1.1 and HTTP/2 together; Envoy's "
            "`http.<stat_prefix>.` with the listener's name as the prefix.", (
        Stat(_H + "downstream_cx_total", COUNTER, "client connections accepted"),
        Stat(_H + "downstream_cx_active", GAUGE, "client connections open"),
        Stat(_H + "downstream_cx_protocol_error", COUNTER, "connections ended by a request that broke the "
             "protocol (answered 400/431 or reset, then closed)"),
        Stat(_H + "downstream_rq_total", COUNTER, "requests received"),
        Stat(_H + "downstream_rq_active", GAUGE, "requests in flight"),
        Stat(_H + "downstream_rq_<class>", COUNTER, "responses sent by status class: `1xx`, `2xx`, `3xx`, "
             "`4xx`, `5xx`", "downstream_rq_1xx … downstream_rq_5xx"),
        Stat(_H + "downstream_rq_completed", COUNTER, "responses sent (the sum of downstream_rq_<class>, "
             "added when read)"),
        Stat(_H + "downstream_rq_time", HISTOGRAM, "request duration in ms, from the request's start to the end of the stream"),
        Stat(_H + "downstream_rq_timeout", COUNTER, "requests whose route timeout fired (504)"),
        Stat(_H + "downstream_rq_idle_timeout", COUNTER, "streams reset after timeouts.stream_idle or the "
             "route's idle_timeout with no bytes either way"),
        Stat(_H + "downstream_rq_header_timeout", COUNTER, "connections closed with 408 because the request "
             "head did not arrive within timeouts.request_headers"),
        Stat(_H + "downstream_rq_rx_reset", COUNTER, "requests the client reset or abandoned before the "
             "response ended"),
        Stat(_H + "downstream_rq_retry_success", COUNTER, "requests whose retry got a response not retried "
             "again (the cluster's upstream_rq_retry_success, seen from the listener)", NONE),
        Stat(_H + "downstream_rq_malformed.<detail>", COUNTER, "requests refused as malformed, by the "
             "detail the x-mosnx-error header and the access log show (`invalid_url`, "
             "`request_headers_too_large`, `header_list_too_large`, `invalid_pseudo_header`, …)", "Envoy's response code details, as stats"),
        Stat(_H + "downstream_rq_failed_path_normalization", COUNTER, "requests refused (400) because "
             "their path cannot be normalised or escaped_slashes: reject"),
        Stat(_H + "downstream_rq_redirected_with_normalized_path", COUNTER, "requests redirected (307) to "
             "their normalised path under escaped_slashes: unescape_and_redirect"),
        Stat(_H + "local_reply.<cause>", COUNTER, "replies mosnx made itself instead of an upstream's, by "
             "cause, the x-mosnx-error value (`route_not_found`, `no_healthy_upstream`, "
             "`upstream_overflow`, `upstream_response_timeout`, `rate_limited`, `fault_abort`, `circuit_open`, …)", NONE),
    )),
    Section("HTTP/2", "Per `protocol: http` listener, for the connections that speak HTTP/2 "
            "(the listener's `http2:` limits).", (
        Stat(_H + "downstream_cx_http2_total", COUNTER, "client connections that speak HTTP/2"),
        Stat(_H + "downstream_rq_refused", COUNTER, "HTTP/2 streams refused (REFUSED_STREAM) above "
             "max_concurrent_streams or while the connection drains", NONE),
        Stat(_H + "downstream_rq_too_many_premature_resets", COUNTER, "connections closed for resetting "
             "too many streams before their response (Rapid Reset)"),
        Stat(_H + "http2.rx_reset", COUNTER, "streams the client reset (RST_STREAM)", "http2.rx_reset"),
        Stat(_H + "http2.premature_resets", COUNTER, "connections closed with GOAWAY ENHANCE_YOUR_CALM "
             "for premature resets", NONE),
        Stat(_H + "http2.header_overflow", COUNTER, "header blocks over limits.request_headers, encoded "
             "(connection closed) or decoded (431)", "http2.header_overflow"),
        Stat(_H + "http2.too_many_headers", COUNTER, "request header blocks over the field count limit "
             "(431)", "http2.too_many_headers"),
        Stat(_H + "http2.header_block_timeout", COUNTER, "connections closed because a header block did "
             "not complete within timeouts.request_headers", NONE),
        Stat(_H + "http2.outbound_flood", COUNTER, "connections closed with more than max_outbound_frames "
             "frames unwritten", "http2.outbound_flood"),
        Stat(_H + "http2.outbound_control_flood", COUNTER, "connections closed with more than "
             "max_outbound_control_frames control frames unwritten", "http2.outbound_control_flood"),
        Stat(_H + "http2.inbound_empty_frames_flood", COUNTER, "connections closed for empty frames in a "
             "row", "http2.inbound_empty_frames_flood"),
        Stat(_H + "http2.inbound_priority_frames_flood", COUNTER, "connections closed for too many "
             "PRIORITY frames", "http2.inbound_priority_frames_flood"),
        Stat(_H + "http2.inbound_window_update_frames_flood", COUNTER, "connections closed for too many "
             "WINDOW_UPDATE frames", "http2.inbound_window_update_frames_flood"),
        Stat(_H + "http2.rx_messaging_error", COUNTER, "malformed request blocks (stream reset) and reused "
             "stream ids (connection closed)", "http2.rx_messaging_error"),
    )),
    Section("TLS on listeners", "Per listener with `tls:`.", (
        Stat("listener.<listener>.ssl.handshake", COUNTER, "TLS handshakes completed"),
        Stat("listener.<listener>.ssl.connection_error", COUNTER, "TLS handshakes that failed"),
        Stat("listener.<listener>.ssl.fail_verify_cert", COUNTER, "handshakes that failed on the client's "
             "certificate", "listener.<address>.ssl.fail_verify_error"),
        Stat("listener.<listener>.ssl.mtls", COUNTER, "handshakes with a verified client certificate", NONE),
        Stat("listener.<listener>.ssl.fail_verify_san", COUNTER, "handshakes that failed because the client "
             "certificate's SANs match none of the listener's SAN matchers (Envoy's DownstreamTlsContext)",
             "listener.<address>.ssl.fail_verify_san"),
    )),
    Section("TLS to clusters", "Per cluster with TLS to its endpoints (`tls:`, or an Envoy transport socket).", (
        Stat(_C + "ssl.fail_verify_san", COUNTER, "connections refused in the handshake because the "
             "endpoint's certificate has none of the SANs asked for"),
        Stat(_C + "ssl.fail_verify_error", COUNTER, "connections refused because the endpoint's certificate "
             "chain does not verify"),
        Stat(_C + "ssl.connection_error", COUNTER, "TLS connections that failed otherwise"),
    )),
    Section("Listeners with filter chains", "By a listener's address (`<host>_<port>`, `[<ipv6>]_<port>` with "
            "`_` for `:`), as Envoy's `listener.<address>.`: every HTTP listener's connections "
            "(downstream_cx_total and downstream_cx_active, read from its `http.<listener>.` counts), and a "
            "listener with several filter chains (the chain serving a connection counts it again under its own "
            "stack's stats).", (
        Stat("listener.<host>_<port>.downstream_cx_total", COUNTER, "connections accepted"),
        Stat("listener.<host>_<port>.downstream_cx_active", GAUGE, "connections open (HTTP listeners)"),
        Stat("listener.<host>_<port>.no_filter_chain_match", COUNTER, "connections closed because no filter "
             "chain matched and there is no default chain"),
        Stat("listener.<host>_<port>.downstream_pre_cx_timeout", COUNTER, "connections whose listener filters "
             "did not finish within listener_filters_timeout"),
    )),
    Section("TCP listeners", "Per `protocol: tcp` listener; Envoy's tcp_proxy `tcp.<stat_prefix>.`.", (
        Stat("tcp.<listener>.downstream_cx_total", COUNTER, "connections accepted"),
        Stat("tcp.<listener>.downstream_cx_active", GAUGE, "connections open"),
        Stat("tcp.<listener>.downstream_cx_rx_bytes_total", COUNTER, "bytes received from clients"),
        Stat("tcp.<listener>.downstream_cx_tx_bytes_total", COUNTER, "bytes sent to clients"),
        Stat("tcp.<listener>.downstream_cx_no_route", COUNTER, "connections closed because no cluster "
             "matched (no SNI route and no default)"),
        Stat("tcp.<listener>.upstream_cx_connect_fail", COUNTER, "connections closed because the upstream "
             "could not be reached", "cluster.<cluster>.upstream_cx_connect_fail"),
        Stat("tcp.<listener>.idle_timeout", COUNTER, "connections closed after tcp.idle_timeout"),
        Stat("tcp.<listener>.sni_routed", COUNTER, "connections routed by the ClientHello's server name",
             "tls_inspector.sni_found"),
        Stat("tcp.<listener>.original_dst", COUNTER, "connections sent to their original destination "
             "(tcp.original_dst)", NONE),
    )),
    Section("RPC listeners", "Per `protocol: bolt | dubbo | thrift` listener, `<proto>.<listener>.`; the names of "
            "Envoy's dubbo_proxy `dubbo.<stat_prefix>.` where it has one (docs/rpc.md).", (
        Stat("<proto>.<listener>.cx_total", COUNTER, "connections accepted", NONE),
        Stat("<proto>.<listener>.cx_active", GAUGE, "connections open", NONE),
        Stat("<proto>.<listener>.request", COUNTER, "requests decoded (two-way and one-way)"),
        Stat("<proto>.<listener>.request_twoway", COUNTER, "requests that expect a response"),
        Stat("<proto>.<listener>.request_oneway", COUNTER, "one-way requests"),
        Stat("<proto>.<listener>.request_heartbeat", COUNTER, "heartbeats answered by the proxy",
             "request_event"),
        Stat("<proto>.<listener>.request_decoding_error", COUNTER, "frames that could not be read: the "
             "connection closed (or, for an unreadable body, a codec error answered)"),
        Stat("<proto>.<listener>.request_active", GAUGE, "requests in flight"),
        Stat("<proto>.<listener>.request_retry", COUNTER, "retries of idempotent methods", NONE),
        Stat("<proto>.<listener>.response", COUNTER, "upstream responses passed back"),
        Stat("<proto>.<listener>.response_success", COUNTER, "of which the provider answered normally"),
        Stat("<proto>.<listener>.response_error", COUNTER, "of which with an error status"),
        Stat("<proto>.<listener>.local_reply", COUNTER, "requests the proxy answered itself, in the "
             "protocol's error format", "local_response_error"),
        Stat("<proto>.<listener>.local_reply_<reason>", COUNTER, "of which by reason: no_route, timeout, "
             "overflow, unavailable, reset, rate_limited, codec_error", NONE),
        Stat("<proto>.<listener>.cx_destroy_remote_with_active_rq", COUNTER, "connections closed with "
             "requests in flight (those are not answered)"),
        Stat("<proto>.<listener>.request_time_ms", HISTOGRAM, "time from a request decoded to its answer, in ms"),
        Stat("<proto>.<listener>.method.<service>.<method>.request", COUNTER, "calls of one method, counted at "
             "their end (only with rpc.method_stats)", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.response_success", COUNTER, "of which the provider "
             "answered normally", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.response_error", COUNTER, "of which the provider "
             "answered with an error status", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.local_reply", COUNTER, "of which the proxy answered "
             "itself", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.local_reply_timeout", COUNTER, "of which because "
             "the route's timeout passed", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.request_retry", COUNTER, "retries made for calls of "
             "the method", NONE),
        Stat("<proto>.<listener>.method.<service>.<method>.request_time_ms", HISTOGRAM, "time from a call "
             "decoded to its answer, in ms", NONE),
        Stat("<proto>.<listener>.method_stats_overflow", COUNTER, "calls of methods beyond the 512 a listener "
             "counts per worker: not counted per method", NONE),
        Stat("cluster.<cluster>.<proto>.response_late", COUNTER, "responses after their request gave up "
             "(timeout, client gone): dropped", NONE),
        Stat("cluster.<cluster>.<proto>.response_unknown", COUNTER, "responses with a request id never "
             "sent on that connection: dropped", NONE),
        Stat("cluster.<cluster>.<proto>.response_decoding_error", COUNTER, "upstream bytes that were not a "
             "frame: that connection closed, its requests failed", NONE),
        Stat("cluster.<cluster>.<proto>.heartbeat", COUNTER, "heartbeats from endpoints, answered", NONE),
        Stat("cluster.<cluster>.<proto>.cx_destroy_remote_with_active_rq", COUNTER, "upstream connections "
             "that closed with requests in flight", NONE),
    )),
    Section("Clusters", "Per cluster, Envoy's names under `cluster.<name>.`.", (
        Stat(_C + "upstream_rq_total", COUNTER, "requests sent to the cluster (each attempt)"),
        Stat(_C + "upstream_rq_<class>", COUNTER, "upstream responses by status class: `2xx`, `3xx`, `4xx`, "
             "`5xx` (a status outside 100..599 counts as 5xx); the sum of upstream_rq_<code> by class",
             "upstream_rq_2xx … upstream_rq_5xx"),
        Stat(_C + "upstream_rq_<code>", COUNTER, "upstream responses by exact status, 100..599, each made at "
             "its first response (`upstream_rq_200`, `upstream_rq_503`; in Prometheus "
             "`envoy_cluster_upstream_rq{envoy_response_code=\"200\"}`)", "upstream_rq_200 …"),
        Stat(_C + "upstream_rq_active", GAUGE, "requests in flight (the circuit breaker's count)"),
        Stat(_C + "upstream_rq_completed", COUNTER, "upstream responses (the sum of upstream_rq_<class>, "
             "added when read)"),
        Stat(_C + "upstream_rq_time", HISTOGRAM, "time from sending a request upstream to its response headers, in ms"),
        Stat(_C + "upstream_rq_timeout", COUNTER, "requests whose route timeout fired while waiting on "
             "the upstream"),
        Stat(_C + "upstream_rq_per_try_timeout", COUNTER, "attempts that hit per_try_timeout"),
        Stat(_C + "upstream_rq_retry", COUNTER, "retries made"),
        Stat(_C + "upstream_rq_retry_success", COUNTER, "retries that got a response not retried again"),
        Stat(_C + "upstream_rq_retry_overflow", COUNTER, "retries not made because max_retries were in flight"),
        Stat(_C + "upstream_rq_pending_total", COUNTER, "requests that waited for a connection"),
        Stat(_C + "upstream_rq_pending_overflow", COUNTER, "requests failed (503) because max_pending_requests "
             "or max_requests was reached"),
        Stat(_C + "upstream_rq_rx_reset", COUNTER, "requests whose upstream reset the stream or connection"),
        Stat(_C + "upstream_rq_maintenance_mode", COUNTER, "declared for Envoy parity; mosnx has no maintenance "
             "mode, so always 0 (no endpoint to send to is local_reply.no_healthy_upstream)"),
        Stat(_C + "upstream_cx_total", COUNTER, "connections opened to endpoints"),
        Stat(_C + "upstream_cx_active", GAUGE, "connections open to endpoints"),
        Stat(_C + "upstream_cx_connect_fail", COUNTER, "connection attempts that failed"),
        Stat(_C + "upstream_cx_connect_timeout", COUNTER, "connection attempts that hit connect_timeout"),
        Stat(_C + "upstream_cx_overflow", COUNTER, "connections not opened because max_connections was reached"),
        Stat(_C + "upstream_cx_destroy_remote", COUNTER, "connections the endpoint closed"),
        Stat(_C + "upstream_cx_protocol_error", COUNTER, "connections closed on a response that broke the "
             "protocol"),
        Stat(_C + "lb_healthy_panic", COUNTER, "picks made in panic mode (healthy endpoints below "
             "healthy_panic_threshold)"),
        Stat(_C + "original_dst_host_invalid", COUNTER, "requests to an ORIGINAL_DST cluster whose "
             "x-envoy-original-dst-host (or named) header is not an ip:port: no host, 503"),
        Stat(_C + "membership_total", GAUGE, "endpoints in the cluster"),
        Stat(_C + "membership_healthy", GAUGE, "endpoints passing health checks and not ejected"),
        Stat(_C + "update_success", COUNTER, "strict_dns resolutions that succeeded"),
        Stat(_C + "update_failure", COUNTER, "strict_dns resolutions that failed (the last endpoints are kept)"),
    )),
    Section("Per route and per endpoint", "For a listener with `stats: {per_route: true}` (routes) or "
            "`{per_host: true}` (endpoints): the upstream response that stands, as the cluster's "
            "upstream_rq_time and upstream_rq_<class> count it. A dot or colon in a vhost or route name is "
            "written `_`; an address as `127.0.0.1_9000`. They multiply series, so they are opt-in.", (
        Stat("vhost.<vhost>.route.<route>.upstream_rq_completed", COUNTER, "upstream responses to requests "
             "this route sent"),
        Stat("vhost.<vhost>.route.<route>.upstream_rq_<class>", COUNTER, "of which by status class: `2xx`, "
             "`3xx`, `4xx`, `5xx`"),
        Stat("vhost.<vhost>.route.<route>.upstream_rq_<code>", COUNTER, "of which by exact status (`200`, "
             "`503`), made at its first response"),
        Stat("vhost.<vhost>.route.<route>.upstream_rq_time", HISTOGRAM, "time from sending a request "
             "upstream to its response headers, in ms"),
        Stat("cluster.<cluster>.host.<address>.upstream_rq_completed", COUNTER, "upstream responses from "
             "this endpoint (Envoy keeps per-host counts in /clusters only)", NONE),
        Stat("cluster.<cluster>.host.<address>.upstream_rq_<class>", COUNTER, "of which by status class",
             NONE),
        Stat("cluster.<cluster>.host.<address>.upstream_rq_<code>", COUNTER, "of which by exact status",
             NONE),
        Stat("cluster.<cluster>.host.<address>.upstream_rq_time", HISTOGRAM, "time from sending a request "
             "to this endpoint to its response headers, in ms", NONE),
    )),
    Section("Endpoints (/clusters)", "Per endpoint, on the admin's `/clusters` (text, as "
            "`<cluster>::<address>::<stat>`, or `?format=json`), not in /stats; Envoy's per-host stats.", (
        Stat(_E + "cx_active", GAUGE, "connections open to the endpoint"),
        Stat(_E + "cx_idle", GAUGE, "of those, pooled and idle", NONE),
        Stat(_E + "rq_active", GAUGE, "requests in flight to the endpoint"),
        Stat(_E + "rq_total", COUNTER, "requests sent to the endpoint"),
        Stat(_E + "rq_error", COUNTER, "attempts answered 5xx or failed locally (connect failure, reset, "
             "timeout)"),
        Stat(_E + "success_rate", GAUGE, "the last outlier-detection interval's success rate, in percent "
             "(-1: not computed)"),
    )),
    Section("Health checks", "Per cluster with `health_check:`.", (
        Stat(_C + "health_check.attempt", COUNTER, "checks started"),
        Stat(_C + "health_check.success", COUNTER, "checks passed"),
        Stat(_C + "health_check.failure", COUNTER, "checks failed (a wrong status, or a network failure)"),
        Stat(_C + "health_check.network_failure", COUNTER, "checks that could not connect or timed out"),
    )),
    Section("Outlier detection", "Per cluster with `outlier_detection:`; `detected` counts every "
            "detection, `enforced` those that ejected (see the enforcing_* percentages).", (
        Stat(_OD + "ejections_active", GAUGE, "endpoints ejected now"),
        Stat(_OD + "ejections_total", COUNTER, "ejections made (as Envoy's deprecated ejections_total: the same as ejections_enforced_total)"),
        Stat(_OD + "ejections_enforced_total", COUNTER, "ejections made"),
        Stat(_OD + "ejections_overflow", COUNTER, "ejections not made because max_ejection_percent was reached"),
        Stat(_OD + "ejections_consecutive_5xx", COUNTER, "consecutive-5xx ejections (Envoy's deprecated name)"),
        Stat(_OD + "ejections_detected_<detector>", COUNTER, "detections by detector: `consecutive_5xx`, "
             "`consecutive_gateway_failure`, `success_rate`, `failure_percentage`, "
             "`consecutive_local_origin_failure`"),
        Stat(_OD + "ejections_enforced_<detector>", COUNTER, "ejections made by detector (same detectors)"),
    )),
    Section("Filters", "Per filter instance, under the filter's `name` (its kind when unnamed), as "
            "`<name>.<stat>`; Envoy puts them under `http.<stat_prefix>.<filter>.`.", (
        Stat("<fault>.delays_injected", COUNTER, "requests delayed by the fault filter"),
        Stat("<fault>.aborts_injected", COUNTER, "requests aborted by the fault filter"),
        Stat("<rate_limit>.ok", COUNTER, "requests the rate limit let through", "http_local_rate_limit.ok"),
        Stat("<rate_limit>.rate_limited", COUNTER, "requests refused by the rate limit",
             "http_local_rate_limit.rate_limited"),
        Stat("<rate_limit>.delayed", COUNTER, "requests queued by the leaky bucket before passing", NONE),
        Stat(_C + "grpc.<service>.<method>.total", COUNTER, "gRPC calls to the cluster (the grpc_stats filter); "
             "`cluster.<cluster>.grpc.total` unless stats_for_all_methods or the allowlist names the method"),
        Stat(_C + "grpc.<service>.<method>.success", COUNTER, "gRPC calls that ended with grpc-status 0"),
        Stat(_C + "grpc.<service>.<method>.failure", COUNTER, "gRPC calls that ended otherwise"),
        Stat(_C + "grpc.<service>.<method>.request_message_count", COUNTER, "gRPC messages the clients sent"),
        Stat(_C + "grpc.<service>.<method>.response_message_count", COUNTER, "gRPC messages the cluster sent back"),
        Stat("<peer_metadata>.header_decode_failed", COUNTER, "x-envoy-peer-metadata values from a peer that "
             "are not base64 of a Struct (the peer is unknown; the request goes on)", NONE),
        Stat("<istio_stats>.series_overflow", COUNTER, "streams not recorded because the filter already keeps "
             "its most label sets (4096)", NONE),
        Stat(_IL + "istio_requests_total", COUNTER, "Istio's request count, one series per label set "
             "(rendered by /stats/prometheus as `istio_requests_total{reporter=...,...}`)"),
        Stat(_IL + "istio_request_duration_milliseconds", HISTOGRAM, "Istio's request duration, ms"),
        Stat(_IL + "istio_request_bytes", HISTOGRAM, "Istio's request body size, bytes"),
        Stat(_IL + "istio_response_bytes", HISTOGRAM, "Istio's response body size, bytes"),
        Stat(_IL + "istio_request_messages_total", COUNTER, "gRPC messages from the client, for a stream "
             "grpc_stats counted (emit_filter_state)"),
        Stat(_IL + "istio_response_messages_total", COUNTER, "gRPC messages from the server, likewise"),
        Stat(_IL + "istio_tcp_connections_opened_total", COUNTER, "Istio's TCP connections opened (upstream "
             "connected), per label set"),
        Stat(_IL + "istio_tcp_connections_closed_total", COUNTER, "Istio's TCP connections closed"),
        Stat(_IL + "istio_tcp_sent_bytes_total", COUNTER, "bytes sent to the client, counted when the connection "
             "closes"),
        Stat(_IL + "istio_tcp_received_bytes_total", COUNTER, "bytes received from the client, counted when the "
             "connection closes"),
        Stat(_H + "cors.origin_valid", COUNTER, "requests whose Origin the cors filter's policy accepts"),
        Stat(_H + "cors.origin_invalid", COUNTER, "requests with an Origin the cors filter's policy does not accept"),
        Stat(_H + "rbac.<rules_stat_prefix>allowed", COUNTER, "requests the rbac filter's rules allowed "
             "(the prefix is the filter's rules_stat_prefix, often empty)"),
        Stat(_H + "rbac.<rules_stat_prefix>denied", COUNTER, "requests the rbac filter's rules denied (403)"),
        Stat(_H + "rbac.<shadow_rules_stat_prefix>shadow_allowed", COUNTER, "requests the rbac filter's "
             "shadow rules would allow (Istio's prefix: istio_dry_run_allow_)"),
        Stat(_H + "rbac.<shadow_rules_stat_prefix>shadow_denied", COUNTER, "requests the rbac filter's "
             "shadow rules would deny; they pass all the same"),
        Stat(_H + "jwt_authn.allowed", COUNTER, "requests jwt_authn let through (a met requirement, or none to meet)"),
        Stat(_H + "jwt_authn.denied", COUNTER, "requests jwt_authn answered 401 or 403"),
        Stat(_H + "jwt_authn.jwks_fetch_success", COUNTER, "remote JWKS fetched and cached"),
        Stat(_H + "jwt_authn.jwks_fetch_failed", COUNTER, "remote JWKS fetches that failed (refused, timed out, "
             "not 200, or no usable key)"),
        Stat(_H + "ext_authz.ok", COUNTER, "requests the authorization service allowed"),
        Stat(_H + "ext_authz.denied", COUNTER, "requests the authorization service denied"),
        Stat(_H + "ext_authz.error", COUNTER, "checks that failed or timed out"),
        Stat(_H + "ext_authz.failure_mode_allowed", COUNTER, "failed checks let through by failure_mode_allow"),
        Stat("<adaptive_concurrency>.gradient_controller.rq_blocked", COUNTER, "requests refused (503) "
             "above the concurrency limit"),
        Stat("<adaptive_concurrency>.gradient_controller.min_rtt_calculation_active", COUNTER,
             "min_rtt measurements started (a gauge in Envoy)"),
        Stat("<adaptive_concurrency>.gradient_controller.concurrency_limit", GAUGE, "the current limit"),
        Stat("<adaptive_concurrency>.gradient_controller.min_rtt_msecs", GAUGE, "the measured idle latency, ms"),
        Stat("<adaptive_concurrency>.gradient_controller.sample_rtt_msecs", GAUGE, "the latest sampled "
             "latency, ms"),
        Stat("<success_rate_breaker>.opened", COUNTER, "breakers that opened", NONE),
        Stat("<success_rate_breaker>.closed", COUNTER, "breakers that closed after good probes", NONE),
        Stat("<success_rate_breaker>.half_opened", COUNTER, "breakers that started probing", NONE),
        Stat("<success_rate_breaker>.rejected", COUNTER, "requests refused (503) by an open breaker", NONE),
        Stat("<system_guard>.rejected_<limit>", COUNTER, "requests refused (503) by a system limit: `load`, "
             "`cpu`, `concurrency`, `rt`", NONE),
    )),
    Section("WASM filters", "Per `wasm` filter, under `wasm.<name>.`.", (
        Stat("wasm.<plugin>.failures", COUNTER, "callbacks that trapped or failed (the request failed, or "
             "passed with fail_open)", NONE),
        Stat("wasm.<plugin>.timeouts", COUNTER, "callbacks stopped at the time limit", NONE),
        Stat("wasm.<plugin>.vm_starts", COUNTER, "VMs started (one per worker, and after a failure)", NONE),
        Stat("wasm.<plugin>.vm_recycles", COUNTER, "VMs replaced because their memory neared max_memory", NONE),
        Stat("wasm.<plugin>.http_calls", COUNTER, "proxy_http_call requests the plugin made", NONE),
        Stat("wasm.<plugin>.<metric>", "as defined", "metrics the plugin defines (proxy_define_metric): "
             "counter, gauge or histogram", "wasmcustom.<metric>"),
    )),
    Section("Server", "Once per worker, summed in /stats.", (
        Stat("server.reload_success", COUNTER, "snapshots a worker built and swapped in", NONE),
        Stat("server.reload_failure", COUNTER, "snapshots a worker could not build (the old one serves on)",
             NONE),
        Stat("server.supervisor_reload_success", COUNTER, "reloads the supervisor validated and handed to "
             "workers", NONE),
        Stat("server.supervisor_reload_failure", COUNTER, "reloads the supervisor refused", NONE),
        Stat("server.mirror_requests", COUNTER, "mirrored (shadow) requests sent", NONE),
        Stat("server.mirror_skipped_body", COUNTER, "mirrors not sent because the request body was larger "
             "than the mirror buffer", NONE),
    )),
    Section("Server state", "Once per proxy, from the supervisor; Envoy's names, which Istio's agent reads "
            "for readiness (docs/istio.md).", (
        Stat("server.state", GAUGE, "0 LIVE, 1 DRAINING (stopping, or /healthcheck/fail), 2 PRE_INITIALIZING, "
             "3 INITIALIZING (the control plane's first listeners and clusters not yet in)"),
        Stat("server.live", GAUGE, "1 while LIVE and not failed by /healthcheck/fail"),
        Stat("listener_manager.workers_started", GAUGE, "1 once every worker has started"),
    )),
    Section("xDS", "With an `xds:` block or an Envoy bootstrap's ADS (docs/xds.md); Envoy's names. "
            "`<xds>` is the type's prefix: `listener_manager.lds`, `cluster_manager.cds` (as Envoy's), "
            "or `rds`, `eds`, `sds`, `scoped_rds`, `vhds`, `rtds` (Envoy keeps these per resource).", (
        Stat("control_plane.connected_state", GAUGE, "1 while the ADS stream to the control plane is up"),
        Stat("control_plane.rate_limit_enforced", COUNTER, "NACKs held back because the control plane "
             "sent the refused version again"),
        Stat("control_plane.pending_requests", GAUGE, "answers waiting to be sent on the stream"),
        Stat("sds_stream.connected_state", GAUGE, "1 while the separate SDS stream (to the cluster an "
             "sds_config's api_config_source names, Istio's sds-grpc) is up"),
        Stat("sds_stream.rate_limit_enforced", COUNTER, "SDS-stream NACKs held back because the server "
             "sent the refused version again"),
        Stat("sds_stream.pending_requests", GAUGE, "answers waiting to be sent on the SDS stream"),
        Stat("<xds>.update_attempt", COUNTER, "responses of that type received"),
        Stat("<xds>.update_success", COUNTER, "responses accepted (ACKed)"),
        Stat("<xds>.update_rejected", COUNTER, "responses refused, in whole or in part (NACKed)"),
        Stat("<xds>.update_failure", COUNTER, "streams that failed while that type was subscribed"),
        Stat("<xds>.version", GAUGE, "a hash of the last accepted version_info"),
        Stat("<xds>.update_time", GAUGE, "when the last update was accepted, ms since the epoch"),
        Stat("eds.update_in_place", COUNTER, "EDS updates that changed only endpoints, applied to the workers "
             "without a reload"),
    )),
    Section("Fast path", "Per process, summed in /stats: the express path and the memos of repeated "
            "heads (docs/architecture.md). `<memo>` is a memo's name, e.g. `http1.request_head`; "
            "MOSNX_FASTPATH=0 or `fast_path: false` turns them all off.", (
        Stat("fastpath.enabled", GAUGE, "1 while the express path and the memos are on", NONE),
        Stat("fastpath.express_rq", COUNTER, "requests the express path forwarded", NONE),
        Stat("fastpath.write_batch.flushes", COUNTER, "loop passes whose socket writes waited for the end "
             "of the pass and were made together", NONE),
        Stat("fastpath.write_batch.deferred", COUNTER, "socket writes that waited for the end of their pass",
             NONE),
        Stat("fastpath.memo.<memo>.hits", COUNTER, "lookups that found their result", NONE),
        Stat("fastpath.memo.<memo>.misses", COUNTER, "results computed and kept (inputs too large to keep "
             "are not looked up)", NONE),
        Stat("fastpath.memo.<memo>.evictions", COUNTER, "entries forgotten when a full memo started again",
             NONE),
    )),
    Section("Tracing", "With a listener's `tracing:` (docs/observability.md). `<format>` is `w3c`, `b3` or "
            "`sw8`; `<exporter>` is `otlp`, `zipkin` or `skywalking` (`zipkin_2`, … for a second one of "
            "a kind).", (
        Stat("tracing.<format>.invalid", COUNTER, "requests whose header of that format was malformed; "
             "they started a fresh trace (or read the next format present)", NONE),
        Stat("tracing.sampled", COUNTER, "requests whose spans were recorded", NONE),
        Stat("tracing.<exporter>.spans_exported", COUNTER, "spans the collector accepted", NONE),
        Stat("tracing.<exporter>.spans_dropped", COUNTER, "spans dropped: the exporter's queue was full "
             "(max_queue) or its export failed", NONE),
        Stat("tracing.<exporter>.export_failed", COUNTER, "export calls that failed (collector unreachable "
             "or refusing); logged at most once a minute", NONE),
    )),
)

STATS: tuple[Stat, ...] = tuple(s for sec in SECTIONS for s in sec.stats)
