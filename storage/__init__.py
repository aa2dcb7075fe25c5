"""SS-MIX2 and UKE storage: layout, names, condition flags, decoding and tokenizing.

This package knows nothing of FHIR; the mappers build resources from what it returns.
"""

from .encoding import Decoded, decode, encode_iso2022jp
from .hl7 import Field, HL7Error, Message, Segment, parse
from .layout import Record, Storage, StoredFile, UnsafePath
from .names import DATA_TYPES, FileName, RecordKey, parse_name
from .reader import Problem, ReadResult, read_bytes, read_file
from .timestamps import HL7Time, parse_ts

__all__ = [
    "DATA_TYPES", "Decoded", "Field", "FileName", "HL7Error", "HL7Time", "Message", "Problem",
    "ReadResult", "Record", "RecordKey", "Segment", "Storage", "StoredFile", "UnsafePath",
    "decode", "encode_iso2022jp", "parse", "parse_name", "parse_ts", "read_bytes", "read_file",
]
