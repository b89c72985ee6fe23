"""The wire protocol v2 (docs/protocol.md): the only Python that knows a frame's field names. Torch-free.

Modules: codes (close codes, and errors.py's error codes re-exported), limits (protocol
constants and the domain's limits re-exported, client caps, msgpack item limits checked
before unpacking), codec (framing, typed field reads, quantised maps,
polygons), server_frames (start, step, end, error, queued, replay, source; `decode`),
results (the analysis frame and every result kind), client_frames (every request a client
sends, parsed and checked once), v1 (reading version-1 recordings). Import from the
submodules; this package imports nothing. The wire sits above the domain's base modules
(errors, limits, types) and imports them; they never import the wire.
"""
