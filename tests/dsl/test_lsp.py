"""`mosnx lsp` end to end: the server runs as its own process (`python -m mosnx lsp`)
and is driven over the Language Server Protocol by pygls's client, as an editor
drives it: initialize, open and change documents, then hover, completion, go to
definition and formatting requests. Diagnostics are compared with what
`mosnx check` prints for the same file.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from lsprotocol import types as T
from pygls.lsp.client import BaseLanguageClient

WAIT = 60.0     # seconds: generous, the machine is shared

CONFIG = """\
listeners:
  - name: web
    address: 127.0.0.1:18080
    rules: rules.mdsl
clusters:
  - name: items
    endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]
  - name: legacy
    endpoints: ["127.0.0.1:9003"]
"""
COMMON = """\
clusters items, legacy
const internal = {10.0.0.0/8}
"""
RULES = """\
import "common.mdsl"

route api when request.path prefix "/api" and source.address in internal {
  to items
  timeout 2s
}
route rest { to legacy }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mosnx.yaml").write_text(CONFIG)
    (tmp_path / "common.mdsl").write_text(COMMON)
    (tmp_path / "rules.mdsl").write_text(RULES)
    return tmp_path


class Session:
    def __init__(self, client: BaseLanguageClient) -> None:
        self.client = client
        self.diagnostics: dict[str, list[T.Diagnostic]] = {}
        self.version = 1

    async def wait_diagnostics(self, uri: str, pred: Callable[[list[T.Diagnostic]], bool]) -> list[T.Diagnostic]:
        """The document's latest diagnostics once they satisfy `pred` (taken from each
        notification: a later one replaces what an earlier one said)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not (uri in self.diagnostics and pred(self.diagnostics[uri])):
            assert loop.time() < deadline, f"no diagnostics as expected for {uri}: {self.diagnostics.get(uri)}"
            await asyncio.sleep(0.05)
        got = self.diagnostics.pop(uri)
        return got

    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        self.client.text_document_did_open(T.DidOpenTextDocumentParams(text_document=T.TextDocumentItem(
            uri=uri, language_id="mdsl", version=1, text=path.read_text() if text is None else text)))
        return uri

    def change(self, uri: str, text: str) -> None:
        self.version += 1
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=self.version),
            content_changes=[T.TextDocumentContentChangeWholeDocument(text=text)]))


def run(project: Path, body: Callable[[Session], Awaitable[None]]) -> None:
    async def main() -> None:
        client = BaseLanguageClient("mosnx-test", "1")
        s = Session(client)

        @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(params: T.PublishDiagnosticsParams) -> None:
            s.diagnostics[params.uri] = list(params.diagnostics)

        await client.start_io(sys.executable, "-m", "mosnx", "lsp", cwd=str(project))
        try:
            await asyncio.wait_for(client.initialize_async(T.InitializeParams(
                capabilities=T.ClientCapabilities(), root_uri=project.as_uri())), WAIT)
            client.initialized(T.InitializedParams())
            await body(s)
            await asyncio.wait_for(client.shutdown_async(None), WAIT)
            client.exit(None)
        finally:
            await client.stop()
    asyncio.run(main())


def check_output(path: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run([sys.executable, "-m", "mosnx", "check", str(path)], capture_output=True, text=True,
                         timeout=120).stdout
    return [(int(m[1]), int(m[2]), m[3]) for m in re.finditer(r"^.*?:(\d+):(\d+): (\w\d+) ", out, re.M)]


def positions(diags: list[T.Diagnostic]) -> list[tuple[int, int, str]]:
    return sorted((d.range.start.line + 1, d.range.start.character + 1, str(d.code)) for d in diags)


def test_diagnostics_as_you_type_match_mosnx_check(project: Path):
    bad_cluster = RULES.replace("to legacy", "to legazy")
    syntax = RULES.replace("timeout 2s", "timeout")

    async def body(s: Session) -> None:
        uri = s.open(project / "rules.mdsl")
        assert await s.wait_diagnostics(uri, lambda d: True) == []
        s.change(uri, bad_cluster)
        got = await s.wait_diagnostics(uri, lambda d: bool(d))
        (project / "rules.mdsl").write_text(bad_cluster)
        assert positions(got) == sorted(check_output(project / "rules.mdsl"))
        assert "legazy" in got[0].message and got[0].source == "mosnx"
        s.change(uri, syntax)
        got = await s.wait_diagnostics(uri, lambda d: bool(d) and str(d[0].code) == "E001")
        (project / "rules.mdsl").write_text(syntax)
        assert positions(got) == sorted(check_output(project / "rules.mdsl"))
        for junk in ("route {{{", "\x00\x01", "vhost v { route r when (((( { }", "const = ", "route r { to x }" * 3):
            s.change(uri, junk)     # broken text: diagnostics, never a crash
            assert await s.wait_diagnostics(uri, lambda d: bool(d))
        s.change(uri, RULES)
        assert await s.wait_diagnostics(uri, lambda d: not d) == []
        # an unsaved error in an imported file shows on the import
        common = s.open(project / "common.mdsl", COMMON.replace("{10.0.0.0/8}", "{10.0.0.0/8"))
        assert str((await s.wait_diagnostics(common, lambda d: bool(d)))[0].code) == "E001"
        s.change(uri, RULES + "\n")
        got = await s.wait_diagnostics(uri, lambda d: bool(d))
        assert (got[0].range.start.line, str(got[0].code)) == (0, "E001")
        assert got[0].message.startswith("common.mdsl:")
    run(project, body)


def test_hover_on_an_attribute_a_cluster_a_route_and_a_const(project: Path):
    async def body(s: Session) -> None:
        uri = s.open(project / "rules.mdsl")
        await s.wait_diagnostics(uri, lambda d: True)

        async def hover(line: int, col: int) -> str:
            h = await s.client.text_document_hover_async(T.HoverParams(
                text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=line, character=col)))
            assert h is not None, (line, col)
            return h.contents.value
        attr = await hover(2, 18)                       # request.path
        assert "request.path" in attr and "`string`" in attr
        cluster = await hover(3, 6)                     # to items
        assert "127.0.0.1:9001" in cluster and "127.0.0.1:9002" in cluster and "mosnx.yaml" in cluster
        route = await hover(2, 7)                       # route api
        assert "route api" in route and '"cluster": "items"' in route and '"timeout": 2.0' in route
        const = await hover(2, 68)                      # internal
        assert "const internal" in const and "10.0.0.0/8" in const
        none = await s.client.text_document_hover_async(T.HoverParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=1, character=0)))
        assert none is None
    run(project, body)


def test_completion_offers_attributes_keywords_clusters_and_consts(project: Path):
    async def body(s: Session) -> None:
        uri = s.open(project / "rules.mdsl")
        got = await s.client.text_document_completion_async(T.CompletionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=3, character=5)))
        items: Any = got.items if isinstance(got, T.CompletionList) else got
        by = {i.label: i.kind for i in items}
        assert by["request.headers"] == T.CompletionItemKind.Field
        assert by["respond"] == T.CompletionItemKind.Keyword
        assert by["items"] == by["legacy"] == T.CompletionItemKind.Module
        assert by["internal"] == T.CompletionItemKind.Constant
    run(project, body)


def test_definition_of_a_const_an_import_and_a_cluster(project: Path):
    async def body(s: Session) -> None:
        uri = s.open(project / "rules.mdsl")

        async def where(line: int, col: int) -> Any:
            loc = await s.client.text_document_definition_async(T.DefinitionParams(
                text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=line, character=col)))
            return loc[0] if isinstance(loc, list) else loc
        const = await where(2, 68)
        assert const.uri == (project / "common.mdsl").as_uri() and const.range.start.line == 1
        imp = await where(0, 10)
        assert imp.uri == (project / "common.mdsl").as_uri()
        cluster = await where(3, 6)
        assert cluster.uri == (project / "mosnx.yaml").as_uri()
        assert CONFIG.splitlines()[cluster.range.start.line].strip().startswith("- name: items")
    run(project, body)


def test_formatting_is_fmt_and_leaves_a_broken_file_alone(project: Path):
    async def body(s: Session) -> None:
        uri = s.open(project / "rules.mdsl", "route r {to legacy   timeout 1s} # why\n")
        edits = await s.client.text_document_formatting_async(T.DocumentFormattingParams(
            text_document=T.TextDocumentIdentifier(uri=uri), options=T.FormattingOptions(tab_size=2,
                                                                                         insert_spaces=True)))
        assert len(edits) == 1
        assert edits[0].new_text == "route r {\n  to legacy\n  timeout 1s\n}  # why\n"
        s.change(uri, "route r { to }\n")
        edits = await s.client.text_document_formatting_async(T.DocumentFormattingParams(
            text_document=T.TextDocumentIdentifier(uri=uri), options=T.FormattingOptions(tab_size=2,
                                                                                         insert_spaces=True)))
        assert not edits
    run(project, body)


def test_rpc_fields_keywords_and_routes(project: Path):
    from mosnx.dsl.lsp import KEYWORDS, attribute_hover
    assert {"rpc", "trace", "tag", "sample"} <= set(KEYWORDS)
    assert "read in an rpc block's routes" in (attribute_hover('rpc.headers["zone"]') or "")
    assert "keyed" not in (attribute_hover("rpc.method") or "keyed")

    async def body(s: Session) -> None:
        calls = project / "calls.mdsl"
        calls.write_text('rpc calls {\n  route billing when rpc.method == "pay" { to items }\n}\n')
        uri = s.open(calls)
        await s.wait_diagnostics(uri, lambda d: True)
        got = await s.client.text_document_completion_async(T.CompletionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=1, character=20)))
        items: Any = got.items if isinstance(got, T.CompletionList) else got
        assert {i.label: i.kind for i in items}["rpc.service"] == T.CompletionItemKind.Field
        h = await s.client.text_document_hover_async(T.HoverParams(
            text_document=T.TextDocumentIdentifier(uri=uri), position=T.Position(line=1, character=9)))
        assert h is not None and "rpc route: to cluster items" in h.contents.value
    run(project, body)
