"""runtime/pipeline.py: a pipeline keeps, per phase, only the hooks its filters override."""
from mosnx.runtime.pipeline import HttpFilter, Pipeline


def test_pipeline_keeps_only_overridden_hooks():
    class OnlyResponse(HttpFilter):
        def on_response(self, ctx):
            return None
    p = Pipeline.of([OnlyResponse(), HttpFilter()])
    assert len(p.response) == 1 and not p.request and not p.log
    assert not Pipeline() and p
