"""``saga ui``: a local, read-only web timeline of the log (needs the ``ui`` extra).

:func:`serve` runs the pages on ``host:port`` until interrupted. The
application itself is :func:`saga.ui.app.create_app`; what it reads from the
log is in :mod:`saga.ui.data`; the chart's geometry in :mod:`saga.ui.chart`.
``static/htmx.min.js`` is htmx 2.0.11 as published on npm (``htmx.org``), under
the BSD Zero-Clause licence in ``static/htmx.LICENSE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saga.store.base import EventLog

__all__ = ["INSTALL_HINT", "serve"]

INSTALL_HINT = "saga ui needs the ui extra: pip install 'saga-coordinator[ui]'"
"""What to do when the web server's packages (starlette, jinja2, uvicorn) are missing."""


def serve(store: EventLog, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the pages over ``store`` (open it with :func:`saga.ui.data.open_store`, which reads
    only) on ``host:port`` until interrupted; the caller closes the store.

    Raises :class:`ImportError` when the ``ui`` extra is not installed.
    """
    import uvicorn

    from saga.ui.app import allowed_hosts, create_app

    app = create_app(store, hosts=allowed_hosts(host, port))
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
