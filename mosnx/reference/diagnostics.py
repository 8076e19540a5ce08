"""docs/diagnostics.md: every code of runtime.codes, each with an input that makes
mosnx report it and the report `mosnx check` prints for that input.

The report is not written here: render() writes each example's files into an
empty folder and runs the checker on them (check_paths, as `mosnx check` does),
so the doc shows real output, and a message that changes changes the doc (a test
keeps the committed file equal to render()). The folder is shown as `.`.

    mosnx docs diagnostics > docs/diagnostics.md
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from mosnx.runtime.codes import CODES, FAMILIES, Code

REGENERATE = "mosnx docs diagnostics > docs/diagnostics.md"

_CLUSTER = """\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
"""
_LISTENER = """\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
"""

# an Envoy bootstrap: one TCP listener to cluster web; {cluster} is the cluster's extra fields
_ENVOY = """\
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: ingress
          cluster: web
  clusters:
  - name: web
{cluster}    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9000}}}}}}
"""
_ENVOY_ADS = """\
node: {id: edge-1, cluster: edge}
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  cds_config: {ads: {}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          rds: {route_config_name: routes, config_source: {ads: {}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: xds
    http2_protocol_options: {}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}
"""


def _rules_config(extra: str = "") -> str:
    return _LISTENER + "    rules: rules.mdsl\n" + extra + _CLUSTER


@dataclass(frozen=True)
class Example:
    """Files written into an empty folder; `check` is what `mosnx check` is given
    (default: the first file). `without` names front ends absent for this run."""
    files: dict[str, str]
    check: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    note: str = ""

    def paths(self) -> tuple[str, ...]:
        return self.check or (next(iter(self.files)),)


def _rules(text: str, note: str = "") -> Example:
    return Example({"rules.mdsl": text}, note=note)


def _with_config(text: str, extra: str = "") -> Example:
    return Example({"mosnx.yaml": _rules_config(extra), "rules.mdsl": text})


EXAMPLES: dict[str, Example] = {
    "C001": Example({"mosnx.yaml": _LISTENER + "   route: {cluster: web}\n" + _CLUSTER}),
    "C002": Example({"mosnx.yaml": """\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
    conect_timeout: 1s
"""}),
    "C003": Example({"mosnx.yaml": "workers: four\n" + _CLUSTER}),
    "C004": Example({"mosnx.yaml": _CLUSTER + "    connect_timeout: 5 seconds\n"}),
    "C005": Example({"mosnx.yaml": "clusters:\n  - name: web\n"}),
    "C006": Example({"mosnx.yaml": _CLUSTER + "  - name: web\n    endpoints: []\n"}),
    "C007": Example({"mosnx.yaml": _LISTENER + """\
    route: {cluster: web}
    tls: {cert: server.pem, key: server.key}
""" + _CLUSTER}),
    "C101": Example({"mosnx.yaml": _LISTENER + "    route: {cluster: wbe}\n" + _CLUSTER}),
    "C201": Example({"mosnx.yaml": _LISTENER + """\
    route: {cluster: web}
    filters:
      - faultt: {abort: {http_status: 503}}
""" + _CLUSTER}),
    "C202": Example({"mosnx.yaml": _LISTENER + """\
    route: {cluster: web}
    filters:
      - fault: {abort: {http_status: 700}}
""" + _CLUSTER}),
    "C203": Example({"mosnx.yaml": _rules_config(), "rules.mdsl": "route all { to web }\n"},
                    without=("mdsl",), note="in a build without the .mdsl front end"),
    "C205": Example({"mosnx.yaml": _CLUSTER}),
    "C401": Example({"mosnx.yaml": "admin: {address: 0.0.0.0:15000}\n" + _LISTENER
                     + "    route: {cluster: web}\n" + _CLUSTER}),
    "C601": Example({"shop_test.yaml": "tests:\n  - request: GET http://h/\n    expect: {route: [}\n"}),
    "C602": Example({"shop_test.yaml": "tests:\n  - request: GET http://h/\n    expect: {rout: api}\n"}),
    "C603": Example({"shop_test.yaml": "tests:\n  - request: GET http://h/api extra\n    expect: {route: api}\n"}),
    "C604": Example({"shop_test.yaml": "config: mosnx.yaml\ntests:\n  - request: GET http://h/\n"
                                       "    expect: {route: api}\n"}),
    "E001": _rules('route api when request.path = "/api" { to web }\n'),
    "E002": _rules('route api when request.paht == "/api" { to web }\n'),
    "E003": _rules('import "common.mdsl"\nroute all { to web }\n'),
    "E004": _rules('const api = api or request.path == "/api"\nroute all when api { to web }\n'),
    "E005": _rules("route deep when " + "(" * 65 + 'request.path == "/"' + ")" * 65 + " { to web }\n"),
    "T101": _rules('route api when request.path == 200 { to web }\n'),
    "T102": _rules('route api when request.path ~ "^/api/([a-z" { to web }\n'),
    "T103": _rules("route api { split { web: 0, web-canary: 0 } }\n"),
    "T104": _rules('route teapot { respond 700 "no" }\n'),
    "T105": _rules('on request { remove request.path }\nroute all { to web }\n'),
    "R201": _rules('route all { to web }\nroute api when request.path prefix "/api" { to web }\n'),
    "R202": _rules('route api when request.path prefix "/api" { to web }\n'
                   'route v1 when request.path prefix "/api/v1" { to web }\n'),
    "R203": _rules('vhost a domains "shop.example.com" { route all { to web } }\n'
                   'vhost b domains "shop.example.com" { route all { to web } }\n'),
    "R204": _rules("route api { split { web: 50, web-canary: 30 } }\n"),
    "R205": _rules("route api { timeout 2s }\n"),
    "R206": _rules("route api { to web  to web-canary }\n"),
    "R207": _rules('route old when request.method == "GET" { redirect 301 prefix "/new" }\n'),
    "U301": _rules("clusters web\nroute all { to wbe }\n"),
    "U302": _with_config('route all { to web  wasm "authz" }\n'),
    "U303": _with_config("route all { to web  trace sample 100% }\n"),
    "D401": _rules('route api when request.path prefix "/api" { to web }\n'
                   'route api when request.path prefix "/v2" { to web }\n'),
    "D402": _rules('const api = request.path prefix "/api"\nconst api = request.path prefix "/v2"\n'
                   "route all when api { to web }\n"),
    "D403": _rules("route all { to web  timeout 2s  timeout 3s }\n"),
    "P501": _rules("route all { to web }\non response { to web }\n"),
    "P502": _rules("route err when response.code == 500 { to web }\n"),
    "P503": _rules('rpc calls {\n  route billing when request.path prefix "/billing" { to web }\n}\n'),
    "P504": _with_config("rpc calls {\n  route all { to web }\n}\n"),
    "X001": Example({"envoy.yaml": _ENVOY.format(cluster="    per_connection_buffer_limit_bytes: 32768\n")}),
    "X002": Example({"envoy.yaml": _ENVOY.format(cluster="    lb_policy: LOAD_BALANCING_POLICY_CONFIG\n")}),
    "X003": Example({"envoy.yaml": _ENVOY.format(cluster="    conect_timeout: 1s\n")}),
    "X004": Example({"envoy.yaml": _ENVOY_ADS}),
}


@contextlib.contextmanager
def _front_ends_absent(names: tuple[str, ...]) -> Iterator[None]:
    from mosnx.runtime import registry
    saved = {n: registry._rules_loaders.pop(n) for n in names if n in registry._rules_loaders}
    try:
        yield
    finally:
        registry._rules_loaders.update(saved)


def run(example: Example) -> tuple[list, str]:
    """The findings for `example` and the text `mosnx check` prints for them."""
    from mosnx.__main__ import check_paths
    from mosnx.dsl import lint
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mosnx-example-") as tmp:
        for name, text in example.files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        os.chdir(tmp)
        try:
            with _front_ends_absent(example.without):
                diags = check_paths(list(example.paths()))
        finally:
            os.chdir(cwd)
        diags.sort(key=lambda d: (d.span.path, d.span.line, d.span.column) if d.span else ("", 0, 0))
        text = lint.render(diags, "text")
        real = os.path.realpath(tmp)
        text = text.replace(real + os.sep, "./").replace(tmp + os.sep, "./")
    return diags, text


def _fence(text: str, lang: str = "") -> list[str]:
    ticks = "````" if "```" in text else "```"
    return [ticks + lang, text.rstrip("\n"), ticks]


def render_code(c: Code) -> list[str]:
    kind = " (warning)" if c.severity == "warning" else ""
    lines = [f'<a id="{c.code.lower()}"></a>', "", f"### {c.code}{kind}", "", c.title[0].upper() + c.title[1:] + ".", ""]
    ex = EXAMPLES.get(c.code)
    if ex is None:
        return lines + ["No config that `mosnx check` accepts reaches this code: it guards configs "
                        "built in code.", ""]
    if ex.note:
        lines += [f"Example ({ex.note}):", ""]
    for name, text in ex.files.items():
        lang = "yaml" if name.endswith((".yaml", ".yml")) else ""
        lines += [f"`{name}`:", ""] + _fence(text, lang) + [""]
    _, out = run(ex)
    lines += _fence(f"$ mosnx check {' '.join(ex.paths())}\n{out}") + [""]
    return lines


HEADER = f"""\
# Diagnostic codes

<!-- Generated from runtime/codes.py and the examples in mosnx/reference/diagnostics.py;
     do not edit. Regenerate with: {REGENERATE} -->

Every finding mosnx reports about a config or a rule file has a stable code, a
place (`file:line:column`) and a message with the particulars. `mosnx check`
prints them (exit status 1 when there are any), and `mosnx run` refuses to start
on an error. Warnings do not stop `run`.

Each code below comes with an input that produces it and the exact output of
`mosnx check` on that input: the examples are run when this file is generated,
in an empty folder shown here as `.`. The rule language is described in
[mdsl.md](mdsl.md); every config key in [config.md](config.md).
"""


def render() -> str:
    lines = [HEADER, "| code | meaning |", "|---|---|"]
    for c in CODES:
        kind = " (warning)" if c.severity == "warning" else ""
        lines.append(f"| [{c.code}](#{c.code.lower()}) | {c.title.replace('|', chr(92) + '|')}{kind} |")
    lines.append("")
    family = None
    for c in CODES:
        if c.code[:2] != family:
            family = c.code[:2]
            lines += [f"## {family}xx: {FAMILIES[family]}", ""]
        lines += render_code(c)
    return "\n".join(lines).rstrip("\n") + "\n"
