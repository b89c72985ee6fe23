"""The medviz server: a Starlette app that streams live sessions, replays and recordings.

Modules: settings (one Settings object), security (token + Origin + Host guard),
broadcast (per-viewer bounded queues over a shared session log), worker (one generation
thread per model, FIFO queue), sessions (the SessionManager interface and its local
implementation), live (the /ws/session and /ws/watch handlers), replay, recordings,
requests (client frames), analysis_run and analysis_jobs (on-demand analysis of a token),
app (routes), cli_commands (`medviz serve | record | replay | watch`).
"""
