"""On-demand and batch analyses of a session's tokens: the registry of kinds, gradient relevancy, faithfulness,
agreement, the biplanar 3D estimate.
"""
