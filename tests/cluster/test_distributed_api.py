"""The distributed internals bigdl's dashboard page relies on still exist and behave as assumed.

Every private name used by ``bigdl/cluster/_distributed_api.py`` is checked
here against the installed distributed; a failure names what moved.
"""

from __future__ import annotations

import urllib.request

import pytest
import tornado.routing
import tornado.web

from bigdl.cluster import _distributed_api as api


@pytest.fixture(scope="module")
def scheduler():
    """An in-process scheduler with its dashboard (no workers: nothing here runs tasks)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        yield cluster.scheduler


def _get(scheduler, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{scheduler.http_server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_scheduler_has_a_tornado_http_application(scheduler):
    application = getattr(scheduler, "http_application", None)
    assert application is not None, "Scheduler.http_application is gone: distributed moved its web server"
    assert isinstance(application, tornado.web.Application)
    assert isinstance(application.default_router, tornado.routing.Router)
    assert isinstance(application.wildcard_router, tornado.routing.Router)


def test_route_patterns_see_distributeds_own_routes(scheduler):
    patterns = api.route_patterns(scheduler)
    assert "/health$" in patterns, f"distributed's /health route not found among {patterns}"
    assert "/metrics$" in patterns
    assert api.http_prefix(scheduler) == "/"


def test_http_prefix_is_read_off_the_health_route():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0",
                      scheduler_kwargs={"http_prefix": "/dask"}) as cluster:
        assert api.http_prefix(cluster.scheduler) == "/dask/"
        assert _get(cluster.scheduler, "/dask/health") == (200, "ok")


def test_added_routes_are_served_once(scheduler):
    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.write("hello from a plugin")

    assert api.add_http_routes(scheduler, [("/bigdl-api-test", Hello, {})]) == ["/bigdl-api-test"]
    assert api.add_http_routes(scheduler, [("/bigdl-api-test", Hello, {})]) == []
    assert _get(scheduler, "/bigdl-api-test") == (200, "hello from a plugin")
    assert api.route_patterns(scheduler).count("/bigdl-api-test$") == 1
    # distributed's own pages are still served (ours do not shadow them)
    assert _get(scheduler, "/health") == (200, "ok")


def test_navigation_pages_are_the_dashboards_and_reach_its_pages(scheduler):
    from distributed.dashboard.scheduler import template_variables

    pages = api.navigation_pages(scheduler)
    assert isinstance(pages, list) and "status" in pages and "workers" in pages
    assert template_variables(scheduler)["pages"] is pages, "template_variables is no longer memoized per scheduler"
    assert api.add_navigation_page(scheduler, "api-test-page") is True
    assert api.add_navigation_page(scheduler, "api-test-page") is False
    status, page = _get(scheduler, "/status")
    assert status == 200
    assert page.count('href="api-test-page"') == 1, "the dashboard's navigation bar no longer renders 'pages'"


def test_scheduler_plugins_receive_logged_events(scheduler):
    """The public hook the plugin listens with: SchedulerPlugin.log_event, called by the event broker."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Listener(SchedulerPlugin):
        name = "bigdl-api-test-listener"

        def __init__(self):
            self.seen = []

        def log_event(self, topic, msg):
            self.seen.append((topic, msg))

    listener = Listener()
    scheduler.add_plugin(listener)
    try:
        scheduler.log_event(["bigdl-a", "bigdl-b"], {"kind": "x"})
    finally:
        scheduler.remove_plugin(listener.name)
    assert listener.seen == [("bigdl-a", {"kind": "x"}), ("bigdl-b", {"kind": "x"})]


def test_metrics_endpoint_serves_prometheus_clients_global_registry(scheduler):
    prometheus_client = pytest.importorskip("prometheus_client")

    class One:
        def describe(self):
            return []

        def collect(self):
            from prometheus_client.core import GaugeMetricFamily

            yield GaugeMetricFamily("bigdl_api_test_gauge", "test", value=42)

    collector = One()
    prometheus_client.REGISTRY.register(collector)
    try:
        status, text = _get(scheduler, "/metrics")
    finally:
        prometheus_client.REGISTRY.unregister(collector)
    assert status == 200
    assert "bigdl_api_test_gauge 42.0" in text
