"""Images in: file bytes (PNG, JPEG, DICOM) -> checked RGB pixels, headers read before pixels, studies of several
views.
"""
