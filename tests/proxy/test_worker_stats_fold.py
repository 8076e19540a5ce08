"""A worker buckets the histogram samples its hot path kept: soon while they come,
seldom when none came."""
import asyncio

from mosnx.proxy import worker as worker_mod
from mosnx.proxy.worker import Worker


class Loop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, cb):
        self.later.append((delay, cb))


def test_fold_stats_buckets_kept_samples_and_rearms(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("listeners: []\nclusters: []\n")
    w = Worker(str(cfg))
    w.loop = Loop()
    h = w.stats.histogram("cluster.web.upstream_rq_time")
    h.add(3.0)
    h.add(7.0)
    w.fold_stats()
    assert h._held == [] and h._counts[2] == 1 and h._counts[3] == 1
    assert w.loop.later == [(worker_mod.FOLD_BUSY, w.fold_stats)]
    w.loop.later[0][1]()                     # the timer fires: nothing came since
    assert w.loop.later[-1] == (worker_mod.FOLD_IDLE, w.fold_stats)


def test_a_sweeping_worker_folds_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_mod, "FOLD_IDLE", 0.01)
    cfg = tmp_path / "m.yaml"
    cfg.write_text("listeners: []\nclusters: []\n")

    async def run():
        w = Worker(str(cfg))
        w.loop = asyncio.get_running_loop()
        sweeper = asyncio.create_task(w.sweep())
        h = w.stats.histogram("h")
        h.add(1.0)
        for _ in range(200):                 # bounded: 2 s at most
            await asyncio.sleep(0.01)
            if not h._held:
                break
        sweeper.cancel()
        return h._held, h._counts[1]
    assert asyncio.run(run()) == ([], 1)
