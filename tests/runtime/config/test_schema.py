from mosnx.runtime.config import describe_schema, load_config_text
from mosnx.runtime.config.document import CLUSTER
from mosnx.runtime.config.compound import Data
from mosnx.runtime.config.schema import Field


def test_a_cluster_setting_without_a_model_attribute_lands_in_options(monkeypatch):
    monkeypatch.setitem(CLUSTER.fields, "health_checks", Field(Data(), "active health checking"))
    c = load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
    health_checks: [{path: /healthz, interval: 5s}]
""")
    assert c.clusters[0].options == {"health_checks": [{"path": "/healthz", "interval": "5s"}]}


def test_describe_schema_lists_every_key_with_its_default_and_doc():
    rows = {r["key"]: r for r in describe_schema()}
    assert rows["clusters[].connect_timeout"] == {
        "key": "clusters[].connect_timeout", "type": "duration", "required": False, "default": 1.0,
        "doc": "time allowed to open a connection"}
    assert rows["listeners[].name"]["required"] is True
    assert rows["listeners[].route.retry.num_retries"]["default"] == 1
    assert rows["listeners[].limits.request_headers"]["default"] == 60 * 1024
    assert all(r["doc"] for r in rows.values())
