"""Distributed tracing, the pure part: trace context in and out of request headers
(W3C Trace Context, Zipkin B3, SkyWalking sw8), the sampling decision, and the
spans of one stream.

Nothing here does I/O or imports beyond the standard library: the proxy core
(proxy.tracing) exports what this package records, and the stream calls the
Tracer (tracer.py) and its trace (trace.py) at the few moments a span starts or
ends.
"""
