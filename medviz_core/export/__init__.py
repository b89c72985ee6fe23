"""Results out: one token's map as DICOM objects (secondary capture, parametric map, segmentation) a PACS viewer
shows.
"""
