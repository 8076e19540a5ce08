"""Envoy's RBAC matchers (config.rbac.v3 Permission and Principal), compiled to predicates.

A permission or a principal is Envoy's message as plain data: a YAML mapping, or
json_format's dict of the decoded message, with proto field names (`and_rules`) or
their JSON names (`andRules`). compile_permission() and compile_principal() turn one
into a predicate `ctx -> bool` once, at config load: regexes compiled, networks turned
into integer bounds, header names lowered, and/or/not nested as closures that
short-circuit. Nothing here walks the config, or allocates, per request (a peer's
address is parsed once and kept in a bounded table).

Invariants:
- A field this module does not know, a matcher it cannot evaluate (CEL conditions,
  extension matchers, route metadata) and a value Envoy's validation refuses are an
  RbacError naming the field path. Nothing unknown becomes a predicate that allows.
- `network=True` compiles for the network filter: there is no request, so header,
  url_path and uri_template matchers meet an empty header map, as Envoy's network
  RBAC gives them.

What a matcher reads of the stream (runtime.context.StreamContext):
- header: request.headers (several values joined with ","); `:method`, `:path`,
  `:authority` (and `host`), `:scheme` read the request line.
- url_path, uri_template: the path without query and fragment (uri_template.py has the
  template syntax).
- destination_ip / destination_port(_range): destination_address / destination_port.
- source_ip, direct_remote_ip: source_address, the peer. remote_ip: the last address of
  x-forwarded-for when the request has one, else the peer (Envoy's downstream remote
  address with use_remote_address off and no trusted hops, as on Istio's sidecar
  inbound); for the network filter, the peer.
- authenticated: ctx.tls (None in cleartext); the principal name is each URI SAN of the
  peer certificate, then each DNS SAN, then its subject, as Envoy.
- requested_server_name: connection_sni.
- metadata / sourced_metadata (DYNAMIC): ctx.metadata[filter] as nested mappings,
  walked by the path's keys (what Envoy calls dynamic metadata).
- filter_state: ctx.filter_state[key] when it is a string. Istio's istio_authn keys
  (io.istio.peer_principal, io.istio.local_principal: what istiod's
  AuthorizationPolicies match on) read, when not set, the first URI SAN of the
  connection's peer and local certificates, which is what istio_authn records.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable

from ..context import StreamContext
from .uri_template import template_regex

Pred = Callable[[StreamContext], bool]
StrPred = Callable[[str], bool]


class RbacError(ValueError):
    """A config the RBAC compiler refuses; `path` is the field, as `policies["p"].permissions[0].header`."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def ALWAYS(ctx: StreamContext) -> bool:
    return True


def NEVER(ctx: StreamContext) -> bool:
    return False


# ---------------------------------------------------------------- reading the message

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    """A JSON field name (`andRules`) as the proto's (`and_rules`)."""
    return _CAMEL.sub(r"_\1", key).lower()


def fields(value: Any, path: str, allowed: Iterable[str]) -> dict[str, Any]:
    """The message `value` with snake_case keys, refusing any key not in `allowed`."""
    if not isinstance(value, dict):
        raise RbacError(path, f"expected a mapping, not {type(value).__name__}")
    out: dict[str, Any] = {}
    known = set(allowed)
    for k, v in value.items():
        key = k if k == "@type" else snake(str(k))
        if key not in known:
            raise RbacError(path, f"unknown or unsupported field {k!r} (known: {', '.join(sorted(known))})")
        if key in out:
            raise RbacError(path, f"field {k!r} given twice")
        out[key] = v
    return out


def at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def one_of(m: dict[str, Any], path: str, kinds: tuple[str, ...], what: str) -> tuple[str, Any]:
    """The one key of `kinds` set in `m` (Envoy's oneof)."""
    found = [k for k in kinds if k in m]
    if len(found) != 1:
        got = "none" if not found else " and ".join(found)
        raise RbacError(path, f"{what} needs exactly one of {', '.join(kinds)} (got {got})")
    return found[0], m[found[0]]


def _int(value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, dict) and set(value) == {"value"}:      # a wrapper written out
        value = value["value"]
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):   # json_format's int64
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RbacError(path, f"expected a whole number, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RbacError(path, f"{value} is outside {lo}..{hi}")
    return value


def _str(value: Any, path: str, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise RbacError(path, f"expected a string, not {value!r}")
    if len(value) < min_len:
        raise RbacError(path, "must not be empty")
    return value


def _true(value: Any, path: str) -> None:
    if value is not True:
        raise RbacError(path, "must be true")


def _list(value: Any, path: str, min_items: int = 1) -> list[Any]:
    if not isinstance(value, list):
        raise RbacError(path, f"expected a list, not {type(value).__name__}")
    if len(value) < min_items:
        raise RbacError(path, f"needs at least {min_items} item(s)")
    return value


# ---------------------------------------------------------------- combinators

def all_of(preds: list[Pred]) -> Pred:
    ps = tuple(p for p in preds if p is not ALWAYS)
    if any(p is NEVER for p in ps):
        return NEVER
    if not ps:
        return ALWAYS
    if len(ps) == 1:
        return ps[0]

    def and_(ctx: StreamContext) -> bool:
        for p in ps:
            if not p(ctx):
                return False
        return True
    return and_


def any_of(preds: list[Pred]) -> Pred:
    ps = tuple(p for p in preds if p is not NEVER)
    if any(p is ALWAYS for p in ps):
        return ALWAYS
    if not ps:
        return NEVER
    if len(ps) == 1:
        return ps[0]

    def or_(ctx: StreamContext) -> bool:
        for p in ps:
            if p(ctx):
                return True
        return False
    return or_


def negate(p: Pred) -> Pred:
    if p is ALWAYS:
        return NEVER
    if p is NEVER:
        return ALWAYS
    return lambda ctx: not p(ctx)


# ---------------------------------------------------------------- string matchers

def regex(value: Any, path: str) -> re.Pattern[str]:
    """An envoy.type.matcher.v3.RegexMatcher (RE2 syntax; the patterns Envoy users write are Python's too)."""
    m = fields(value, path, ("regex", "google_re2"))
    pattern = _str(m.get("regex"), at(path, "regex"), 1)
    try:
        return re.compile(pattern)
    except re.error as e:
        raise RbacError(at(path, "regex"), f"bad regex {pattern!r}: {e}") from None


def string_matcher(value: Any, path: str) -> StrPred:
    """An envoy.type.matcher.v3.StringMatcher as a predicate on a string."""
    m = fields(value, path, ("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case", "custom"))
    if "custom" in m:
        raise RbacError(at(path, "custom"), "custom string matchers are not supported")
    ic = m.pop("ignore_case", False) is True
    kind, want = one_of(m, path, ("exact", "prefix", "suffix", "contains", "safe_regex"), "a string matcher")
    if kind == "safe_regex":
        rx = regex(want, at(path, kind))
        return lambda s: rx.fullmatch(s) is not None
    w = _str(want, at(path, kind), 0 if kind == "exact" else 1)
    if ic:
        w = w.lower()
        if kind == "exact":
            return lambda s: s.lower() == w
        if kind == "prefix":
            return lambda s: s.lower().startswith(w)
        if kind == "suffix":
            return lambda s: s.lower().endswith(w)
        return lambda s: w in s.lower()
    if kind == "exact":
        return w.__eq__
    if kind == "prefix":
        return lambda s: s.startswith(w)
    if kind == "suffix":
        return lambda s: s.endswith(w)
    return lambda s: w in s


# ---------------------------------------------------------------- headers and paths

def _header_getter(name: str, network: bool) -> Callable[[StreamContext], str | None]:
    if network:
        return lambda ctx: None
    if name == ":method":
        return lambda ctx: ctx.request.method or None
    if name == ":path":
        return lambda ctx: ctx.request.path or None
    if name in (":authority", "host"):
        return lambda ctx: ctx.request.host or None
    if name == ":scheme":
        return lambda ctx: ctx.request.scheme or None
    lk = name.encode("latin-1")

    def get(ctx: StreamContext) -> str | None:
        found: bytes | None = None
        for k, v in ctx.request.headers.items:
            if k == lk:
                found = v if found is None else found + b"," + v
        return None if found is None else found.decode("latin-1")
    return get


def header(value: Any, path: str, network: bool = False) -> Pred:
    """An envoy.config.route.v3.HeaderMatcher, as Envoy's HeaderUtility::matchHeaders."""
    m = fields(value, path, ("name", "exact_match", "safe_regex_match", "range_match", "present_match",
                             "prefix_match", "suffix_match", "contains_match", "string_match",
                             "invert_match", "treat_missing_header_as_empty"))
    name = _str(m.get("name"), at(path, "name"), 1).lower()
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        raise RbacError(at(path, "name"), f"{name!r} is no header name") from None
    get = _header_getter(name, network)
    invert = m.get("invert_match", False) is True
    missing_empty = m.get("treat_missing_header_as_empty", False) is True
    kinds = ("exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
             "suffix_match", "contains_match", "string_match")
    given = [k for k in kinds if k in m]
    if len(given) > 1:
        raise RbacError(path, f"a header matcher takes one of {', '.join(kinds)} (got {' and '.join(given)})")
    kind = given[0] if given else None
    present = True
    test: StrPred
    if kind is None:
        test = lambda v: True   # noqa: E731
    elif kind == "present_match":
        present = m[kind] is True
        test = lambda v: present   # noqa: E731
    elif kind == "string_match":
        test = string_matcher(m[kind], at(path, kind))
    elif kind == "safe_regex_match":
        rx = regex(m[kind], at(path, kind))
        test = lambda v: rx.fullmatch(v) is not None   # noqa: E731
    elif kind == "range_match":
        r = fields(m[kind], at(path, kind), ("start", "end"))
        lo, hi = _int(r.get("start", 0), at(path, "range_match.start")), _int(r.get("end", 0), at(path, "range_match.end"))

        def test(v: str) -> bool:
            try:
                return lo <= int(v) < hi
            except ValueError:
                return False
    else:
        want = _str(m[kind], at(path, kind))
        if kind == "exact_match":
            test = lambda v: not want or v == want   # noqa: E731  (Envoy: an empty exact_match matches any value)
        elif kind == "prefix_match":
            test = lambda v: v.startswith(want)   # noqa: E731
        elif kind == "suffix_match":
            test = lambda v: v.endswith(want)   # noqa: E731
        else:
            test = lambda v: want in v   # noqa: E731
    is_present = kind == "present_match"

    def pred(ctx: StreamContext) -> bool:
        v = get(ctx)
        if v is None:
            if not missing_empty:
                # Envoy: a missing header matches only `present_match: false` (or its inversion)
                return (is_present and present) if invert else (is_present and not present)
            v = ""
        return test(v) != invert
    return pred


def _request_path(ctx: StreamContext) -> str:
    p = ctx.url_path
    i = p.find("#")
    return p if i < 0 else p[:i]


def url_path(value: Any, path: str, network: bool = False) -> Pred:
    """An envoy.type.matcher.v3.PathMatcher: the string matcher on the path without query and fragment."""
    m = fields(value, path, ("path",))
    if "path" not in m:
        raise RbacError(path, "a path matcher needs path")
    sm = string_matcher(m["path"], at(path, "path"))
    if network:
        return NEVER
    return lambda ctx: bool(ctx.request.path) and sm(_request_path(ctx))


URI_TEMPLATE = "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
def uri_template(value: Any, path: str, network: bool = False) -> Pred:
    """A TypedExtensionConfig holding envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig."""
    m = fields(value, path, ("name", "typed_config"))
    tc = fields(m.get("typed_config"), at(path, "typed_config"), ("@type", "path_template"))
    kind = str(tc.get("@type", "")).rsplit("/", 1)[-1]
    if kind != URI_TEMPLATE:
        raise RbacError(at(path, "typed_config"), f"a uri_template must be a {URI_TEMPLATE}, not {kind or 'untyped'}")
    template = _str(tc.get("path_template"), at(path, "typed_config.path_template"), 1)
    try:
        rx = re.compile(template_regex(template))
    except ValueError as e:
        raise RbacError(at(path, "typed_config.path_template"), f"{template!r}: {e}") from None
    if network:
        return NEVER
    return lambda ctx: rx.fullmatch(_request_path(ctx)) is not None


# ---------------------------------------------------------------- addresses

_ADDRESSES: dict[str, tuple[int, int] | None] = {}
_ADDRESSES_MAX = 4096


def parsed_ip(s: str) -> tuple[int, int] | None:
    """(version, integer) of an address string, or None; kept in a bounded table, so a
    connection's every request parses its peer's address once."""
    got = _ADDRESSES.get(s, False)
    if got is not False:
        return got  # type: ignore[return-value]  # False is the miss marker, never stored
    try:
        a = ipaddress.ip_address(s.split("%", 1)[0])
        v: tuple[int, int] | None = (a.version, int(a))
    except ValueError:
        v = None
    if len(_ADDRESSES) >= _ADDRESSES_MAX:
        _ADDRESSES.clear()
    _ADDRESSES[s] = v
    return v


def cidr(value: Any, path: str, read: Callable[[StreamContext], str]) -> Pred:
    """An envoy.config.core.v3.CidrRange on the address `read` gives."""
    m = fields(value, path, ("address_prefix", "prefix_len"))
    addr = _str(m.get("address_prefix"), at(path, "address_prefix"), 1)
    plen = _int(m.get("prefix_len", 0), at(path, "prefix_len"), 0, 128)
    try:
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
    except ValueError as e:
        raise RbacError(path, f"bad CIDR range {addr}/{plen}: {e}") from None
    version, lo = net.version, int(net.network_address)
    hi = lo + net.num_addresses

    def pred(ctx: StreamContext) -> bool:
        a = parsed_ip(read(ctx))
        return a is not None and a[0] == version and lo <= a[1] < hi
    return pred


def _source(ctx: StreamContext) -> str:
    return ctx.source_address


def _forwarded(ctx: StreamContext) -> str:
    last: bytes | None = None
    for k, v in ctx.request.headers.items:
        if k == b"x-forwarded-for":
            last = v
    if last is None:
        return ctx.source_address
    return last.rpartition(b",")[2].strip().decode("latin-1")


def _destination(ctx: StreamContext) -> str:
    return ctx.destination_address


# ---------------------------------------------------------------- metadata

_MISSING = object()


def value_matcher(value: Any, path: str) -> Callable[[Any], bool]:
    """An envoy.type.matcher.v3.ValueMatcher on a plain value (_MISSING when absent)."""
    m = fields(value, path, ("null_match", "double_match", "string_match", "bool_match", "present_match",
                             "list_match", "or_match"))
    kind, v = one_of(m, path, ("null_match", "double_match", "string_match", "bool_match", "present_match",
                               "list_match", "or_match"), "a value matcher")
    p = at(path, kind)
    if kind == "null_match":
        fields(v, p, ())
        return lambda x: x is None
    if kind == "double_match":
        d = fields(v, p, ("range", "exact"))
        k, want = one_of(d, p, ("range", "exact"), "a double matcher")
        if k == "exact":
            if isinstance(want, bool) or not isinstance(want, (int, float)):
                raise RbacError(at(p, "exact"), f"expected a number, not {want!r}")
            return lambda x: not isinstance(x, bool) and isinstance(x, (int, float)) and x == want
        r = fields(want, at(p, "range"), ("start", "end"))
        lo, hi = r.get("start", 0), r.get("end", 0)
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (lo, hi)):
            raise RbacError(at(p, "range"), "start and end must be numbers")
        return lambda x: not isinstance(x, bool) and isinstance(x, (int, float)) and lo <= x < hi
    if kind == "string_match":
        sm = string_matcher(v, p)
        return lambda x: isinstance(x, str) and sm(x)
    if kind == "bool_match":
        if not isinstance(v, bool):
            raise RbacError(p, f"expected true or false, not {v!r}")
        return lambda x: isinstance(x, bool) and x == v
    if kind == "present_match":
        if not isinstance(v, bool):
            raise RbacError(p, f"expected true or false, not {v!r}")
        return lambda x: v and x is not _MISSING
    if kind == "list_match":
        lm = fields(v, p, ("one_of",))
        if "one_of" not in lm:
            raise RbacError(p, "a list matcher needs one_of")
        inner = value_matcher(lm["one_of"], at(p, "one_of"))
        return lambda x: isinstance(x, list) and any(inner(i) for i in x)
    om = fields(v, p, ("value_matchers",))
    ms = tuple(value_matcher(x, at(at(p, "value_matchers"), i))
               for i, x in enumerate(_list(om.get("value_matchers"), at(p, "value_matchers"), 2)))
    return lambda x: any(mm(x) for mm in ms)


def metadata(value: Any, path: str) -> Pred:
    """An envoy.type.matcher.v3.MetadataMatcher on the stream's dynamic metadata."""
    m = fields(value, path, ("filter", "path", "value", "invert"))
    ns = _str(m.get("filter"), at(path, "filter"), 1)
    keys: list[str] = []
    for i, seg in enumerate(_list(m.get("path"), at(path, "path"))):
        s = fields(seg, at(at(path, "path"), i), ("key",))
        keys.append(_str(s.get("key"), at(at(at(path, "path"), i), "key"), 1))
    if "value" not in m:
        raise RbacError(path, "a metadata matcher needs value")
    test = value_matcher(m["value"], at(path, "value"))
    invert = m.get("invert", False) is True
    ks = tuple(keys)

    def pred(ctx: StreamContext) -> bool:
        md = ctx.metadata
        v: Any = md.get(ns, _MISSING) if md else _MISSING
        for k in ks:
            v = v.get(k, _MISSING) if isinstance(v, dict) else _MISSING
        return test(v) != invert
    return pred


def sourced_metadata(value: Any, path: str) -> Pred:
    m = fields(value, path, ("metadata_matcher", "metadata_source"))
    source = m.get("metadata_source", "DYNAMIC")
    if source not in ("DYNAMIC", 0):
        raise RbacError(at(path, "metadata_source"), "only DYNAMIC metadata is supported (mosnx routes carry none)")
    if "metadata_matcher" not in m:
        raise RbacError(path, "sourced_metadata needs metadata_matcher")
    return metadata(m["metadata_matcher"], at(path, "metadata_matcher"))


def filter_state(value: Any, path: str) -> Pred:
    m = fields(value, path, ("key", "string_match", "address_match"))
    key = _str(m.get("key"), at(path, "key"), 1)
    if "address_match" in m:
        raise RbacError(at(path, "address_match"), "address_match on filter state is not supported")
    if "string_match" not in m:
        raise RbacError(path, "a filter_state matcher needs string_match")
    sm = string_matcher(m["string_match"], at(path, "string_match"))
    connection = ISTIO_AUTHN.get(key)

    def pred(ctx: StreamContext) -> bool:
        fs = ctx.filter_state
        v = fs.get(key) if fs else None
        if v is None and connection is not None:
            v = connection(ctx)
        return isinstance(v, str) and sm(v)
    return pred


def _peer_uri(ctx: StreamContext) -> str | None:
    t = ctx.tls
    return t.uri_sans[0] if t is not None and t.uri_sans else None


def _local_uri(ctx: StreamContext) -> str | None:
    t = ctx.tls
    return t.local_uri_sans[0] if t is not None and t.local_uri_sans else None


# the connection filter state Istio's istio_authn network filter sets, from the handshake
ISTIO_AUTHN: dict[str, Callable[[StreamContext], str | None]] = {
    "io.istio.peer_principal": _peer_uri, "io.istio.local_principal": _local_uri}


# ---------------------------------------------------------------- permissions and principals

PERMISSION_KINDS = ("and_rules", "or_rules", "any", "header", "url_path", "destination_ip", "destination_port",
                    "destination_port_range", "metadata", "not_rule", "requested_server_name", "matcher",
                    "uri_template", "sourced_metadata")
PRINCIPAL_KINDS = ("and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip", "remote_ip",
                   "header", "url_path", "metadata", "filter_state", "not_id", "sourced_metadata", "custom")


def compile_permission(value: Any, path: str = "", network: bool = False) -> Pred:
    m = fields(value, path, PERMISSION_KINDS)
    kind, v = one_of(m, path, PERMISSION_KINDS, "a permission")
    p = at(path, kind)
    if kind in ("and_rules", "or_rules"):
        s = fields(v, p, ("rules",))
        rules = _list(s.get("rules"), at(p, "rules"))
        preds = [compile_permission(r, at(at(p, "rules"), i), network) for i, r in enumerate(rules)]
        return all_of(preds) if kind == "and_rules" else any_of(preds)
    if kind == "not_rule":
        return negate(compile_permission(v, p, network))
    if kind == "any":
        _true(v, p)
        return ALWAYS
    if kind == "header":
        return header(v, p, network)
    if kind == "url_path":
        return url_path(v, p, network)
    if kind == "uri_template":
        return uri_template(v, p, network)
    if kind == "destination_ip":
        return cidr(v, p, _destination)
    if kind == "destination_port":
        port = _int(v, p, 0, 65535)
        return lambda ctx: ctx.destination_port == port
    if kind == "destination_port_range":
        r = fields(v, p, ("start", "end"))
        lo, hi = _int(r.get("start", 0), at(p, "start"), 0, 65536), _int(r.get("end", 0), at(p, "end"), 0, 65536)
        if lo >= hi:
            raise RbacError(p, f"range start {lo} must be below its end {hi}")
        return lambda ctx: lo <= ctx.destination_port < hi
    if kind == "metadata":
        return metadata(v, p)
    if kind == "sourced_metadata":
        return sourced_metadata(v, p)
    if kind == "requested_server_name":
        sm = string_matcher(v, p)
        return lambda ctx: sm(ctx.connection_sni)
    raise RbacError(p, "extension matchers are not supported")


def authenticated(value: Any, path: str) -> Pred:
    m = fields(value, path, ("principal_name",))
    if "principal_name" not in m:
        return lambda ctx: ctx.tls is not None
    sm = string_matcher(m["principal_name"], at(path, "principal_name"))

    def pred(ctx: StreamContext) -> bool:
        tls = ctx.tls
        if tls is None:
            return False
        for uri in tls.uri_sans:
            if sm(uri):
                return True
        for dns in tls.dns_sans:
            if sm(dns):
                return True
        return sm(tls.subject)
    return pred


def compile_principal(value: Any, path: str = "", network: bool = False) -> Pred:
    m = fields(value, path, PRINCIPAL_KINDS)
    kind, v = one_of(m, path, PRINCIPAL_KINDS, "a principal")
    p = at(path, kind)
    if kind in ("and_ids", "or_ids"):
        s = fields(v, p, ("ids",))
        ids = _list(s.get("ids"), at(p, "ids"))
        preds = [compile_principal(x, at(at(p, "ids"), i), network) for i, x in enumerate(ids)]
        return all_of(preds) if kind == "and_ids" else any_of(preds)
    if kind == "not_id":
        return negate(compile_principal(v, p, network))
    if kind == "any":
        _true(v, p)
        return ALWAYS
    if kind == "authenticated":
        return authenticated(v, p)
    if kind in ("source_ip", "direct_remote_ip") or (kind == "remote_ip" and network):
        return cidr(v, p, _source)
    if kind == "remote_ip":
        return cidr(v, p, _forwarded)
    if kind == "header":
        return header(v, p, network)
    if kind == "url_path":
        return url_path(v, p, network)
    if kind == "metadata":
        return metadata(v, p)
    if kind == "sourced_metadata":
        return sourced_metadata(v, p)
    if kind == "filter_state":
        return filter_state(v, p)
    raise RbacError(p, "custom (extension) principals are not supported")
