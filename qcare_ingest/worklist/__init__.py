"""The DICOM Modality Worklist (issue 16): applied orders as C-FIND items.

matching (PS3.4 key matching, pure) <- query (identifier -> keys, match, response) and
items (a row -> the values returned); reads (the SQL); scp (pynetdicom, the process).
"""
