"""What every fuzz target shares: coverage instrumentation when run as a script,
the libFuzzer entry point, and a byte splitter.

A target imports the mosnx modules it tests inside `instrumented(...)`: run as a
script, those imports (and their own imports under the named prefixes) are
compiled with atheris' coverage hooks, which is what makes the fuzzing
coverage-guided for pure-Python code; imported by the pytest replay, nothing is
instrumented and the modules are the ordinary installed ones.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import traceback


def instrumented(as_script: bool, *include: str):
    """A context for the target's imports: atheris' import hook for the module
    prefixes `include` when the target runs as a script, otherwise nothing."""
    if not as_script:
        return contextlib.nullcontext()
    import atheris
    return atheris.instrument_imports(include=list(include))


def signature(exc: BaseException) -> tuple[str, str, str]:
    """(exception type, function it was raised in, message) of a failure."""
    tb = traceback.extract_tb(exc.__traceback__)
    return type(exc).__name__, tb[-1].name if tb else "", str(exc)


def fuzz(test_one_input, known: tuple[tuple[str, str, str], ...] = ()) -> None:
    """Hand `test_one_input` to libFuzzer with this process' arguments; never returns.

    `known`: open findings, each (exception type, function it is raised in, start of
    its message) and each kept as a crash file in crashes/<target>/. An input that
    fails the same way is reported (on the 1st, 2nd, 4th, ... time) and passed
    over, so a run goes on to find other failures; the pytest replay of crashes/
    calls test_one_input directly and still sees each one fail.
    """
    import atheris
    hits: dict[tuple, int] = {}

    def one(data: bytes) -> None:
        try:
            test_one_input(data)
        except Exception as e:
            kind, where, msg = signature(e)
            for k in known:
                if k[0] == kind and k[1] == where and msg.startswith(k[2]):
                    n = hits[k] = hits.get(k, 0) + 1
                    if n & (n - 1) == 0:
                        print(f"KNOWN: {kind} in {where}: {k[2]!r}: {n} inputs", file=sys.stderr, flush=True)
                    return
            raise

    atheris.Setup(_self_command(sys.argv), one)
    atheris.Fuzz()


def _self_command(argv: list[str]) -> list[str]:
    """argv, with argv[0] a command that runs this target again: libFuzzer's -merge
    and -fork run argv[0] as a program, and a script needs its interpreter (this
    one, the project's virtualenv). One small wrapper per target, rewritten each time."""
    if not any(a.startswith(("-merge=", "-set_cover_merge=", "-fork=")) for a in argv[1:]):
        return argv
    script = os.path.abspath(argv[0])
    name = os.path.splitext(os.path.basename(script))[0]
    path = os.path.join(tempfile.gettempdir(), f"mosnx-{name}-{os.getuid()}.sh")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(script)} "$@"\n')
    os.chmod(path, 0o700)
    return [path, *argv[1:]]


def split(data: bytes, cuts: bytes) -> list[bytes]:
    """`data` in pieces, cut where the bytes of `cuts` say (each a distance of 1-256
    from the previous cut, wrapping nothing past the end); joined, they are `data`."""
    out = []
    pos = 0
    for c in cuts:
        end = pos + c + 1
        if end >= len(data):
            break
        out.append(data[pos:end])
        pos = end
    out.append(data[pos:])
    return out
