"""The hospital's archive (PACS) over DICOMweb: find studies (QIDO-RS), read their instances and thumbnails
(WADO-RS), store medviz's results back into the same study (STOW-RS).

Every answer of a PACS is untrusted input: sizes, item counts, value types and UIDs are checked before use.
Imports medviz_core only; the server (settings, sockets) and the CLI import it, never the reverse.
"""
