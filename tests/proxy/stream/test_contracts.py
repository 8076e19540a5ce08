"""The executor's seams: every implementation has each method of its Protocol, with
parameters the callers' calls fit (the type checker holds the annotated ones too;
this catches drift where a method is not annotated)."""
from __future__ import annotations

import inspect

import pytest

from mosnx.proxy.http1.server import Http1Server
from mosnx.proxy.http2.downstream import H2Down
from mosnx.proxy.stream import HttpStream
from mosnx.proxy.stream.contracts import Downstream, Stream, Tunnel, Upstream
from mosnx.proxy.upstream.http1 import UpstreamConnection
from mosnx.proxy.upstream.http2 import H2UpStream

from .fakes import FakeDown, FakeUp


def methods(proto) -> dict[str, inspect.Signature]:
    out = {}
    for name, member in vars(proto).items():
        if name.startswith("_") or not callable(member):
            continue
        out[name] = inspect.signature(member)
    return out


def fits(impl, want: inspect.Signature) -> bool:
    """Whether every call the Protocol's signature allows is one `impl` accepts."""
    got = inspect.signature(impl)
    params = list(got.parameters.values())
    wanted = list(want.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    if len(params) < len(wanted):
        return False
    # the names the Protocol gives may be passed by keyword: the implementation keeps them
    for p, w in zip(params, wanted):
        if p.name != w.name and w.kind is not w.POSITIONAL_ONLY:
            return False
        if (p.default is p.empty) and (w.default is not w.empty):
            return False
    # further parameters of the implementation must have defaults
    return all(p.default is not p.empty for p in params[len(wanted):])


@pytest.mark.parametrize("impl,proto", [
    (Http1Server, Downstream), (H2Down, Downstream), (FakeDown, Downstream),
    (UpstreamConnection, Upstream), (H2UpStream, Upstream), (FakeUp, Upstream),
    (UpstreamConnection, Tunnel), (HttpStream, Stream),
])
def test_implementations_fit_their_protocol(impl, proto):
    for name, sig in methods(proto).items():
        member = getattr(impl, name, None)
        assert member is not None, f"{impl.__name__} lacks {proto.__name__}.{name}"
        if isinstance(inspect.getattr_static(impl, name), property):
            continue
        assert fits(member, sig), f"{impl.__name__}.{name}{inspect.signature(member)} does not fit {sig}"


@pytest.mark.parametrize("impl,proto", [(UpstreamConnection, Upstream), (H2UpStream, Upstream)])
def test_upstream_handles_carry_the_attributes_the_stream_reads(impl, proto):
    slots = set()
    for k in impl.__mro__:
        slots.update(getattr(k, "__slots__", ()))
        slots.update(vars(k))
    for attr in ("stream", "pool", "paused", "reused"):
        assert attr in slots, f"{impl.__name__} lacks {attr}"


def test_nothing_shims_another_protocol():
    # an HTTP/2 handle is no HTTP/1.1 connection in disguise, and the stream asks
    # neither whether it takes bytes or fields
    for impl in (UpstreamConnection, H2UpStream):
        for gone in ("structured", "expect_head", "requests" if impl is H2UpStream else "structured"):
            assert not hasattr(impl, gone), f"{impl.__name__}.{gone}"
