"""The composition root's list of front ends and filters.

Importing each package registers it in runtime's registry; workers are spawned
processes, so they import the same list before building a snapshot.
"""
import importlib
import importlib.util

PLUGINS = ("mosnx.runtime.filters", "mosnx.dsl", "mosnx.wasm")


def load() -> None:
    for name in PLUGINS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def worker_entry(config_path: str, worker_id: int, conn, version: int) -> None:
    load()
    from mosnx.proxy.worker import run_worker
    run_worker(config_path, worker_id, conn, version)
