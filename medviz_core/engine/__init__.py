"""The engine: a loaded model's token loop, its attention capture and KV caches, and the typed seam (api) the rest
of medviz sees.
"""
