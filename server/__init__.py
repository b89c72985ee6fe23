"""The medviz server and command line: HTTP, websockets, sessions, the queue and fan-out.

Modules: settings (one Settings object), security (token + Origin + Host guard),
log_redaction, connections (caps and idle timeouts per kind), broadcast (per-viewer
bounded queues over a shared session log), worker (one generation thread per model, a
FIFO queue, analyses in a fair line between frames), fair_queue, image_budget, sessions
(the SessionManager interface and its local implementation), live (/ws/session and
/ws/watch), replay, recordings (HTTP), analysis_jobs (queueing, caching, answering
analyses), app (routes), uvicorn_config, background (a server in a thread), client
(`medviz watch`), and the command line: cli (the top of the import graph), cli_analysis,
cli_commands. The wire format and everything computed live in medviz_core.
"""
