"""Results out: one token's map as DICOM objects (secondary capture, parametric map, segmentation) a PACS viewer
shows, and a recording as a video for slides (MP4, GIF, WebP).
"""
