"""Recordings: the frames of a session appended to a file, read back tolerantly, and the summary sidecar listings
read.
"""
