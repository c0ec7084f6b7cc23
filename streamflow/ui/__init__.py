"""``streamflow ui``: a local web application to watch and steer runs (see docs/ui.md).

* :mod:`streamflow.ui.server`: the ASGI application and :func:`~streamflow.ui.server.serve`.
* :mod:`streamflow.ui.auth`: token, cookie, CSRF, Host and Origin checks, security headers.
* :mod:`streamflow.ui.live`: the runs index and the per-run live feeds (SSE).
* :mod:`streamflow.ui.api`: the JSON views.
* ``static/``: the single-page application (plain ES modules, vendored libraries).
"""

from __future__ import annotations

__all__: list[str] = []
