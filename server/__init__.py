"""The medviz server and command line: HTTP, websockets, sessions, the queue and fan-out.

At the top: settings (one Settings object), app (routes), sessions (the SessionManager interface and its local
implementation), worker (one generation thread per model), fair_queue, broadcast (per-viewer bounded queues over
a shared session log), analysis_jobs (queueing, caching, answering analyses), recordings (HTTP) and
recording_disk, uvicorn_config, background (a server in a thread). Folders: guard/ (who may talk to the server
and what it may cost), sockets/ (the websocket conversations), scale/ (Redis and Ray), cli/ (the `medviz`
command, the top of the import graph). The wire format and everything computed live in medviz_core;
docs/architecture.md is the map.
"""
