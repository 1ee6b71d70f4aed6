"""The only module that touches distributed's private (undocumented) API.

The bigdl dashboard page lives on the scheduler's own web server, next to
``/status``; distributed has no public hook to add pages there or links to
its navigation, so this module does it through the attributes distributed
itself uses, in one place.  ``tests/cluster/test_distributed_api.py`` checks
each of them against the installed distributed and fails loudly, naming the
attribute, when an upgrade moves one.  Everything here runs in the
scheduler's process, on its event loop.

Relied upon (distributed 2026.x):

- ``Scheduler.http_application``: the ``tornado.web.Application`` (a
  ``distributed.http.routing.RoutingApplication``) serving the dashboard
  port; pages are added with tornado's public ``add_handlers``.
- the rules of that application's ``default_router``, to find the HTTP
  prefix the scheduler was started with (``http_prefix=``), read off the
  route of distributed's ``/health`` page.
- ``distributed.dashboard.scheduler.template_variables(scheduler)``: a
  memoized dict whose ``pages`` list is the dashboard's navigation bar
  (``base.html`` renders one link per entry, relative to the page).
"""

from __future__ import annotations

import weakref

import tornado.routing

__all__ = ["add_http_routes", "http_prefix", "add_navigation_page", "navigation_pages"]

# Applications that already have a route, by URL pattern: a plugin started
# twice (re-registered, or by a preload and a client) must not add it twice.
_added: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _application(scheduler):
    application = getattr(scheduler, "http_application", None)
    if application is None:
        raise RuntimeError("bigdl dashboard: this Dask scheduler has no 'http_application' (its web server); "
                           "distributed's internals changed, see bigdl/cluster/_distributed_api.py.")
    return application


def http_prefix(scheduler) -> str:
    """The path prefix of the scheduler's web pages: ``"/"`` unless it was started with ``http_prefix=``."""
    for pattern in route_patterns(scheduler):
        if pattern.endswith("health$"):
            return pattern[: -len("health$")] or "/"
    return "/"


def route_patterns(scheduler) -> list[str]:
    """The URL patterns the scheduler's web server routes itself (one entry per route, duplicates kept)."""
    patterns: list[str] = []
    seen: set[int] = set()

    def walk(router) -> None:
        if id(router) in seen:
            return
        seen.add(id(router))
        for rule in getattr(router, "rules", []):
            if isinstance(rule.matcher, tornado.routing.PathMatches):
                patterns.append(rule.matcher.regex.pattern)
            if isinstance(rule.target, tornado.routing.Router):
                walk(rule.target)

    application = _application(scheduler)
    walk(application.default_router)
    walk(application.wildcard_router)
    return patterns


def add_http_routes(scheduler, routes: list[tuple]) -> list[str]:
    """Serve ``(pattern, handler_class, kwargs)`` routes on the scheduler's web server; return the new patterns.

    A pattern already added by this function to the same server is skipped.
    """
    application = _application(scheduler)
    done = _added.setdefault(application, set())
    new = [route for route in routes if route[0] not in done]
    if new:
        application.add_handlers(r".*$", new)
        done.update(route[0] for route in new)
    return [route[0] for route in new]


def navigation_pages(scheduler) -> list[str]:
    """The dashboard's navigation bar entries (``["status", "workers", ...]``); empty without Bokeh."""
    try:
        from distributed.dashboard.scheduler import template_variables
    except ImportError:  # no Bokeh: no dashboard pages to link to
        return []
    return template_variables(scheduler)["pages"]


def add_navigation_page(scheduler, page: str) -> bool:
    """Add ``page`` (a path relative to the dashboard's pages) to its navigation bar once; True if added."""
    pages = navigation_pages(scheduler)
    if not isinstance(pages, list):
        raise RuntimeError("bigdl dashboard: distributed's template_variables(scheduler)['pages'] is not a list; "
                           "distributed's internals changed, see bigdl/cluster/_distributed_api.py.")
    if page in pages:
        return False
    # The Bokeh documents render a shallow copy of this dict made at start-up,
    # which shares this list: appending reaches every page rendered from now on.
    pages.append(page)
    return True
