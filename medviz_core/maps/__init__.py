"""Relevancy maps from a step's reduced attention rows: the six methods, statistics and regions, and the host work
that finishes a step.
"""
