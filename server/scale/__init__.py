"""The optional scale-out: stateless web nodes and generation workers sharing sessions through Redis, placed by Ray
Serve.
"""
