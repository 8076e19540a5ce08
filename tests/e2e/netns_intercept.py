"""Run inside `unshare -n` (a private network namespace, as root): build a pod-like
network, apply Istio's iptables rules (nat table of a golden), start mosnx and a
workload, send an application's traffic, print what happened as JSON.

Usage: python netns_intercept.py MODE GOLDEN BOOTSTRAP MOSNX [MOSNX-ARGS...]
MODE "iptables": apply GOLDEN's nat rules with the owner uid/gid 1337 rewritten to
this process's (mosnx runs as root here; the application drops to uid/gid 65534).
MODE "tproxy": GOLDEN is Istio's TPROXY golden: its IPv4 mangle, nat and raw tables,
owner rewritten the same way (the marks stay), with the policy routing istio-iptables
adds in that mode (fwmark 1337 -> table 133: local default dev lo).
MODE "plain": no rules (a connection's destination is the address it reached).

The network: lo up; a veth pair v0/v1 with the pod address 10.1.0.5/24 on v0 and
the service ranges 10.96.0.0/16 and 9.9.0.0/16 routed out of v0, so an application's connection to
a service leaves through an interface that is not lo, as in a pod. Nothing here
touches the host's namespace.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

POD = "10.1.0.5"
APP_PORT = 9080


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def network() -> None:
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "link", "set", "v1", "up")
    sh("ip", "addr", "add", f"{POD}/24", "dev", "v0")
    sh("ip", "route", "add", "10.96.0.0/16", "dev", "v0")
    sh("ip", "route", "add", "9.9.0.0/16", "dev", "v0")


def nat_rules(golden: str, tables: tuple[str, ...] = ("nat",)) -> str:
    """The golden's IPv4 sections of `tables` (the first of each name: iptables-save
    comes before ip6tables-save), owner 1337 rewritten to ours."""
    lines = open(golden).read().splitlines()
    me = str(os.getuid())
    picked: list[str] = []
    for table in tables:
        start = lines.index(f"* {table}")
        picked += lines[start:lines.index("COMMIT", start) + 1]
    out = []
    for line in picked:
        line = line.replace("--uid-owner 1337", f"--uid-owner {me}").replace("--gid-owner 1337",
                                                                            f"--gid-owner {os.getgid()}")
        out.append(line)
    return "\n".join(out) + "\n"


class Workload:
    """The pod's application server: answers each connection with what it saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((POD, APP_PORT))
        self.sock.listen(16)
        self.peers: list[str] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            data = c.recv(1024)
            if data.startswith(b"GET "):           # HTTP: what it saw in the body
                body = b"pod saw " + peer[0].encode() + b": " + data.split(b"\r\n", 1)[0]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                          + body)
            else:
                c.sendall(b"pod saw " + peer[0].encode() + b": " + data)
            c.close()


APP = r"""
import os, socket, sys
host, port = sys.argv[1].encode(), int(sys.argv[2])    # bytes: no idna codec to load
payload = sys.argv[3].encode().replace(b"|", b"\r\n") if len(sys.argv) > 3 else b"hello"
os.setgroups([]); os.setgid(65534); os.setuid(65534)   # not the proxy's: iptables captures this one
s = socket.socket()                   # made after: a socket's owner is who made it
s.settimeout(5)
s.connect((host, port))
s.sendall(payload)
buf = b""
while True:
    d = s.recv(1024)
    if not d:
        break
    buf += d
print(buf.decode())
"""


def app(host: str, port: int, payload: str = "hello") -> str:
    r = subprocess.run([sys.executable, "-c", APP, host, str(port), payload], capture_output=True, timeout=20,
                       text=True)
    return (r.stdout.strip() or ("error: " + r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""))


def wait_ready(admin: int, timeout: float = 30.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stats(admin: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=5) as r:
        data = json.loads(r.read())
    if isinstance(data, dict) and "stats" in data:
        return {s["name"]: s.get("value") for s in data["stats"] if "name" in s}
    return data


def main() -> int:
    mode, golden, bootstrap, *cmd = sys.argv[1:]
    network()
    if mode == "iptables":
        subprocess.run(["iptables-restore"], input=nat_rules(golden), text=True, check=True, capture_output=True)
    elif mode == "tproxy":
        subprocess.run(["iptables-restore"], input=nat_rules(golden, ("mangle", "nat", "raw")), text=True,
                       check=True, capture_output=True)
        sh("ip", "-f", "inet", "rule", "add", "fwmark", "1337", "lookup", "133")
        sh("ip", "-f", "inet", "route", "add", "local", "default", "dev", "lo", "table", "133")
    net = "9.9.0" if mode == "tproxy" else "10.96.0"
    work = Workload()
    admin = json.load(open(bootstrap))["admin"]["address"]["socket_address"]["port_value"]
    log = open(bootstrap + ".log", "w")
    proc = subprocess.Popen([*cmd, "-c", bootstrap], stdout=log, stderr=subprocess.STDOUT)
    out: dict = {}
    try:
        if not wait_ready(admin):
            out["error"] = "mosnx did not become ready"
            return 0
        out["outbound"] = app(f"{net}.10", 80)           # a service: captured to 15001
        out["denied"] = app(f"{net}.11", 81)             # a service whose listener's RBAC denies
        out["http"] = app(f"{net}.12", 8080, "GET /reviews HTTP/1.1|Host: reviews|Connection: close||")
        out["plain_pod"] = app(POD, 15001) if mode == "plain" else ""
        out["peers"] = list(work.peers)
        out["stats"] = stats(admin)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
