"""The reference client works here: Envoy, fed by xds-fileserver, proxies a request.

`make interop` runs this before the suite, so that a broken build, a missing Envoy or a
port problem shows up as one clear line instead of a page of failed scenarios. It is the
xDS kit's example (example-envoy-bootstrap.yaml against example-resources.yaml: ADS over a
static xds_cluster; listener_0 -> RDS local_route -> EDS backend_a) on free loopback ports.
Exits 0 when Envoy answered through the listener with the upstream's message.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from xdsharness import (Procs, bootstrap, envoy_binary, example_resources, free_port, http_get,  # noqa: E402
                        port_open, proxy_argv, wait_until, write_json, xds_bin)


def main() -> int:
    started = time.monotonic()
    envoy = envoy_binary()
    with tempfile.TemporaryDirectory(prefix="mosnx-xds-smoke-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        try:
            xds, listener, port_a, port_b, admin = (free_port() for _ in range(5))
            up = procs.start("upstream", [str(xds_bin("gcp-upstream")), "-upstream", str(port_a),
                                          "-message", "backend_a"])
            wait_until("gcp-upstream listening", lambda: port_open(port_a), timeout=20, alive=(up,))
            resources = write_json(work / "resources.json", example_resources("v1", listener, port_a, port_b))
            fs = procs.start("xds-fileserver", [str(xds_bin("xds-fileserver")), "-addr", f"127.0.0.1:{xds}",
                                                "-config", str(resources), "-ads=true", "-v=true"])
            wait_until("xds-fileserver listening", lambda: port_open(xds), timeout=20, alive=(fs,))
            boot = write_json(work / "bootstrap.yaml", bootstrap(node_id="envoy-1", xds_port=xds, admin_port=admin))
            proxy = procs.start("envoy", proxy_argv("envoy", boot))
            wait_until("Envoy to proxy GET / to backend_a", lambda: http_get(listener, "/") == (200, "backend_a"),
                       timeout=30, interval=0.1, alive=(proxy,))
            print(f"smoke: Envoy ({envoy}) took listener_0 over ADS from xds-fileserver and proxied GET / "
                  f"to backend_a, {time.monotonic() - started:.1f} s")
            return 0
        except AssertionError as e:
            print(f"smoke: FAILED: {e}\n{procs.logs()}", file=sys.stderr)
            return 1
        finally:
            procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
