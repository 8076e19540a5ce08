"""`make fuzz`: run each fuzz target for a while, one after the other, and sum up.

    python tests/fuzz/run.py [--time SECONDS] [--merge] [TARGET ...]

Each target fuzzes from its committed corpus (tests/fuzz/corpus/<target>/) into a
working corpus under build/fuzz/<target>/, with its dictionary if it has one; a
crash is written to tests/fuzz/crashes/<target>/. The log of each run is
build/fuzz/<target>.log; the table printed at the end gives, per target, the
inputs executed (libFuzzer's `#N DONE` line), their rate, and the coverage.

--merge instead minimises each committed corpus: libFuzzer's -set_cover_merge=1
keeps, of the committed and the working corpus, a small set with the same
coverage; regress-* files (fixed crashes) are kept whatever they cover.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, "build", "fuzz")
TARGETS = ("http1", "http2", "hpack", "rpc", "thrift", "mdsl", "config", "wasm_abi")
DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+)")


def _cmd(target: str, *args: str) -> list[str]:
    cmd = [sys.executable, os.path.join(HERE, f"fuzz_{target}.py"), "-rss_limit_mb=2048", "-timeout=25", *args]
    d = os.path.join(HERE, f"{target}.dict")
    if os.path.exists(d):
        cmd.insert(2, f"-dict={d}")
    return cmd


def fuzz(target: str, seconds: int) -> dict:
    work = os.path.join(WORK, target)
    crashes = os.path.join(HERE, "crashes", target)
    os.makedirs(work, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    log = os.path.join(WORK, f"{target}.log")
    cmd = _cmd(target, f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/", work,
               os.path.join(HERE, "corpus", target))
    print(f"== {target}: {seconds} s (log: {os.path.relpath(log, ROOT)})", flush=True)
    start = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    text = open(log, errors="replace").read()
    m = None
    for m in DONE.finditer(text):
        pass
    row = {"target": target, "rc": rc, "seconds": round(time.monotonic() - start)}
    if m:
        row.update(runs=int(m[1]), cov=int(m[2]), ft=int(m[3]), corpus=f"{m[4]}/{m[5]}", rate=int(m[6]))
    row["crash"] = re.findall(r"Test unit written to (\S+)", text)
    row["known"] = sorted(set(re.findall(r"KNOWN: (.*): \d+ inputs", text)))
    return row


def merge(target: str) -> None:
    corpus = os.path.join(HERE, "corpus", target)
    fresh = os.path.join(WORK, f"{target}.merged")
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh)
    inputs = [corpus] + [d for d in (os.path.join(WORK, target),) if os.path.isdir(d)]
    subprocess.run(_cmd(target, "-set_cover_merge=1", fresh, *inputs), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    dropped = _drop_failing(target, fresh)
    if not os.listdir(fresh):
        sys.exit(f"{target}: the merge kept nothing; {os.path.relpath(corpus, ROOT)} left as it was")
    before = len(os.listdir(corpus))
    for n in os.listdir(corpus):
        if n.startswith("regress-"):        # fixed crashes stay, named, whatever they cover
            shutil.copy(os.path.join(corpus, n), fresh)
    shutil.rmtree(corpus)
    shutil.move(fresh, corpus)
    size = sum(os.path.getsize(os.path.join(corpus, n)) for n in os.listdir(corpus))
    print(f"{target}: {before} -> {len(os.listdir(corpus))} files, {size} bytes"
          + (f" ({dropped} failing like an open finding left out)" if dropped else ""))


def _drop_failing(target: str, folder: str) -> int:
    """Remove the inputs that fail (fuzzing keeps those that fail like an open
    finding, for their coverage); the committed corpus must replay clean."""
    import importlib
    sys.path.insert(0, HERE)
    run = importlib.import_module(f"fuzz_{target}").test_one_input
    n = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        try:
            run(data)
        except Exception:
            os.remove(path)
            n += 1
    return n


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=int, default=300, help="seconds per target (default 300)")
    ap.add_argument("--merge", action="store_true", help="minimise the committed corpora instead")
    ap.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    args = ap.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"no such target: {', '.join(sorted(unknown))}")
    if args.merge:
        for t in targets:
            merge(t)
        return 0
    rows = [fuzz(t, args.time) for t in targets]
    print(f"\n{'target':<10} {'inputs':>10} {'exec/s':>8} {'cov':>6} {'corpus':>14} {'time':>6}  result")
    bad = 0
    for r in rows:
        result = "crash: " + ", ".join(os.path.relpath(c, ROOT) for c in r["crash"]) if r["crash"] else \
            ("ok" if r["rc"] == 0 else f"exit {r['rc']}")
        bad += result != "ok"
        print(f"{r['target']:<10} {r.get('runs', '-'):>10} {r.get('rate', '-'):>8} {r.get('cov', '-'):>6} "
              f"{r.get('corpus', '-'):>14} {r['seconds']:>5}s  {result}")
        for k in r["known"]:
            print(f"{'':<10} passed over, known: {k}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
