"""`mosnx check`: output formats, exit codes, and no tracebacks."""
from __future__ import annotations

import io
import json
import os

from mosnx.dsl.lint import main

BROKEN = 'clusters web\nroute a when request.pth == "/" { to wbe }\n'


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_clean_rules_pass(rules):
    path = rules.write('route a when request.path == "/" { to web }')
    assert run(path) == (0, "All checks passed!\n", "")


def test_text_output_with_caret_and_did_you_mean(rules):
    path = rules.write(BROKEN)
    code, out, _ = run(path)
    assert code == 1
    assert out == (
        f'{path}:2:14: E002 unknown field "request.pth" (did you mean "request.path"?)\n'
        '  route a when request.pth == "/" { to wbe }\n'
        '               ^^^^^^^^^^^\n'
        f'{path}:2:35: U301 unknown cluster "wbe" (did you mean "web"?)\n'
        '  route a when request.pth == "/" { to wbe }\n'
        '                                    ^^^^^^\n'
        'Found 2 errors.\n')


def test_warnings_count_as_findings(rules):
    path = rules.write("route a { split { x: 50, y: 40 } }")
    code, out, _ = run(path)
    assert code == 1 and out.endswith("Found 1 warning.\n")


def test_json_format(rules):
    path = rules.write(BROKEN)
    code, out, _ = run("--format", "json", path)
    assert code == 1
    first = json.loads(out)[0]
    assert first == {"path": path, "line": 2, "column": 14, "end_line": 2, "end_column": 25, "code": "E002",
                     "severity": "error", "message": 'unknown field "request.pth" (did you mean "request.path"?)'}


def test_sarif_format(rules):
    path = rules.write(BROKEN)
    code, out, _ = run("--format", "sarif", path)
    doc = json.loads(out)
    assert code == 1 and doc["version"] == "2.1.0"
    run0 = doc["runs"][0]
    assert [r["id"] for r in run0["tool"]["driver"]["rules"]] == ["E002", "U301"]
    res = run0["results"][0]
    assert res["ruleId"] == "E002" and res["level"] == "error"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == path
    assert loc["region"] == {"startLine": 2, "startColumn": 14, "endLine": 2, "endColumn": 25}


def test_github_format(rules):
    path = rules.write("route a { split { x: 50, y: 40 } }")
    code, out, _ = run("--format=github", path)
    assert code == 1
    assert out == (f"::warning file={path},line=1,col=11,endLine=1,endColumn=33,title=R204::"
                   "R204 split weights add up to 90, not 100\n")


def test_clean_in_every_format(rules):
    path = rules.write("route a { to web }")
    assert run("--format", "json", path)[:2] == (0, "[]\n")
    assert json.loads(run("--format", "sarif", path)[1])["runs"][0]["results"] == []
    assert run("--format", "github", path)[:2] == (0, "")


def test_folder_is_checked_as_one_rule_set(rules):
    rules.write('vhost a domains "x.com" { route r { to web } }', "d/one.mdsl")
    rules.write('vhost b domains "x.com" { route r { to web } }', "d/two.mdsl")
    rules.write("not rules", "d/readme.txt")
    code, out, _ = run(os.path.join(rules.tmp, "d"))
    assert code == 1 and "R203" in out and "two.mdsl:1:17" in out


def test_syntax_error_never_prints_a_traceback(rules):
    path = rules.write("vhost v { route a when { }")
    code, out, err = run(path)
    assert code == 1 and "E001" in out and "Traceback" not in out + err


def test_usage_errors_exit_2(rules):
    assert run()[0] == 2
    assert run("--format", "xml", rules.write("route a { to b }"))[0] == 2
    code, _, err = run(os.path.join(rules.tmp, "missing.mdsl"))
    assert code == 2 and "no such file or folder" in err


def test_yaml_config_is_built_with_its_clusters(rules):
    rules.write('route a when request.path == "/" { to web }\nroute b { to api }', "r/main.mdsl")
    cfg = rules.write("listeners:\n  - name: l\n    address: 127.0.0.1:18080\n    rules: r\n"
                      "clusters:\n  - {name: web, endpoints: [\"127.0.0.1:9000\"]}\n", "mosnx.yaml")
    code, out, _ = run(cfg)
    assert code == 1
    assert f'{rules.tmp}/r/main.mdsl:2:11: U301 unknown cluster "api"' in out
    assert "  route b { to api }" in out


def test_yaml_config_reports_rule_warnings(rules):
    rules.write("route a { split { web: 50, web2: 40 } }", "r/main.mdsl")
    cfg = rules.write("listeners:\n  - name: l\n    address: 127.0.0.1:18080\n    rules: r/main.mdsl\n"
                      "clusters:\n  - {name: web, endpoints: [\"127.0.0.1:9000\"]}\n"
                      "  - {name: web2, endpoints: [\"127.0.0.1:9001\"]}\n", "mosnx.yaml")
    code, out, _ = run(cfg)
    assert code == 1 and "R204 split weights add up to 90, not 100" in out


def test_yaml_config_errors_in_the_same_formats(rules):
    cfg = rules.write("listeners:\n  - name: l\n    adress: 127.0.0.1:18080\n", "bad.yaml")
    code, out, _ = run("--format", "json", cfg)
    assert code == 1
    assert any(d["path"] == cfg and d["line"] == 3 for d in json.loads(out))


def test_examples_pass(rules):
    here = os.path.dirname(__file__)
    ex = os.path.normpath(os.path.join(here, "..", "..", "examples", "shop"))
    assert run(os.path.join(ex, "rules")) == (0, "All checks passed!\n", "")
    assert run(os.path.join(ex, "mosnx.yaml"))[:2] == (0, "All checks passed!\n")
