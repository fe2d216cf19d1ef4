"""The local terminal API (aiohttp) under /api/v1: cases, devices, status and events.

Modules, one job each: `app` (routes + factory), `middleware` (pipeline), `auth` (tokens),
`cors` (CORS / Private Network Access), `errors` (codes and zh-CN/en messages), `bodies`
(request validation), `views` (JSON shapes), and one module per group of routes: `cases`,
`card`, `materials`, `receipt`, `status`, `events`; `serve` runs it on TCP and a Unix socket.
"""

from gateway.api.app import PREFIX, ROUTES, create_app
from gateway.api.serve import ApiStartError, Listening, serve

__all__ = ["PREFIX", "ROUTES", "ApiStartError", "Listening", "create_app", "serve"]
