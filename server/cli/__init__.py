"""The `medviz` command, the top of the import graph: generate, analyses, serve, worker, record, replay, watch,
export.
"""
