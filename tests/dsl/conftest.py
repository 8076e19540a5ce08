"""Helpers for the .mdsl tests: write rules to a temp file, check or compile them,
and drive compiled rules through the phases as the proxy core does."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from mosnx import plugins

# the tests stand where the CLI does: the composition root registers every front end
# and filter (the examples' configs use wasm and built-in filters beside the rules)
plugins.load()
from mosnx.dsl.compile import compile_program
from mosnx.dsl.rules import analyze
from mosnx.runtime.actions import Action, Pause
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.registry import RulesResult, Services


def request(path: str = "/", method: str = "GET", host: str = "shop.example.com",
            headers: dict | list | None = None, source: str = "203.0.113.7") -> StreamContext:
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    h = Headers.from_pairs([("host", host)] + pairs)
    return StreamContext(RequestHead(method, path, h), listener="test", source=(source, 40000),
                         destination=("127.0.0.1", 8080))


@dataclass
class Outcome:
    vhost: object = None
    route: object = None
    reply: Action | None = None       # a step's action (local reply, pause)
    phase: str = ""                   # where the reply came from

    @property
    def action(self):
        return self.route.action if self.route is not None else None


def run_request(rules: RulesResult, ctx: StreamContext) -> Outcome:
    """Listener request steps, vhost selection, vhost request steps, route match,
    route request steps: the order the proxy core runs them in."""
    out = Outcome()
    for step in rules.pipeline.request:
        a = step(ctx)
        if a is not None:
            out.reply, out.phase = a, "listener"
            return out
    vh = rules.routes.vhost_for(ctx.request.host)
    out.vhost = vh
    if vh is None:
        return out
    for step in vh.pipeline.request:
        a = step(ctx)
        if a is not None:
            out.reply, out.phase = a, "vhost"
            return out
    r = vh.match(ctx)
    out.route = r
    if r is None:
        return out
    ctx.route = r
    act = r.action
    if hasattr(act, "cluster"):
        ctx.cluster_name = act.cluster or act.weighted_clusters[0][0]
    for step in r.pipeline.request:
        a = step(ctx)
        if a is not None:
            out.reply, out.phase = a, "route"
            return out
    return out


def run_response(rules: RulesResult, ctx: StreamContext, out: Outcome, status: int = 200,
                 headers: dict | None = None) -> None:
    ctx.response = ResponseHead(status, Headers.from_pairs(list((headers or {}).items())))
    steps = []
    if out.route is not None:
        steps += out.route.pipeline.response
    if out.vhost is not None:
        steps += out.vhost.pipeline.response
    steps += rules.pipeline.response
    for step in steps:
        step(ctx)


def run_log(rules: RulesResult, ctx: StreamContext, out: Outcome) -> None:
    steps = []
    if out.route is not None:
        steps += out.route.pipeline.log
    if out.vhost is not None:
        steps += out.vhost.pipeline.log
    steps += rules.pipeline.log
    for step in steps:
        step(ctx)


@dataclass
class Rules:
    tmp: str
    emitted: list = field(default_factory=list)

    def write(self, src: str, name: str = "rules.mdsl") -> str:
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        return path

    def diagnose(self, src: str, clusters=None, filters=None, name: str = "rules.mdsl"):
        path = self.write(src, name)
        _, diags = analyze([path], clusters, filters)
        return diags

    def lines(self, src: str, **kw) -> list[str]:
        """Each finding as 'line:col: CODE message'."""
        return [f"{d.span.line}:{d.span.column}: {d.code} {d.message}" for d in self.diagnose(src, **kw)]

    def compile(self, src: str, filters=None, name: str = "rules.mdsl") -> RulesResult:
        path = self.write(src, name)
        prog, diags = analyze([path], None, set(filters or ()))
        errors = [d.render() for d in diags if d.severity == "error"]
        assert not errors, "\n".join(errors)
        services = Services(emit=lambda ctx, kind, rec: self.emitted.append((kind, rec)))
        return compile_program(prog, filters, services)


def settle(action):
    """The result of a Pause (await it), else the action itself."""
    import asyncio
    if isinstance(action, Pause):
        return asyncio.run(_await(action.awaitable))
    return action


async def _await(aw):
    return await aw


Rules.request = staticmethod(request)
Rules.run = staticmethod(run_request)
Rules.run_response = staticmethod(run_response)
Rules.run_log = staticmethod(run_log)
Rules.settle = staticmethod(settle)


@pytest.fixture
def rules(tmp_path) -> Rules:
    return Rules(str(tmp_path))
