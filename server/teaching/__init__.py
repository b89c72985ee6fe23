"""Recordings turned into teaching material: a video of a recording rendered for slides, and the offline player
(one HTML file that replays a recording with no server), with their download routes.
"""
