"""The content ledger (storage.ledger): reads are recorded by the accessors, unread content listed."""

from __future__ import annotations

from storage.hl7 import STANDARD_DELIMITERS, Segment, parse
from storage.ledger import AuditMessage, audited, unread

TEXT = ("MSH|^~\\&|HIS|S|GW|R|20240101||RDE^O11^RDE_O11|1|P|2.5\r"
        "TQ1|1||A&朝&L~W0100100&月曜日、木曜日&JAMISDP01|||5^d\r"
        "RXE||X^drug^L|1||T^錠^MR9P||a^一^L~b^二^L\r")


def test_plain_parse_is_not_audited() -> None:
    msg = parse(TEXT)
    assert type(msg).__name__ == "Message"
    assert msg.delimiters is STANDARD_DELIMITERS
    assert type(msg["TQ1"]) is Segment


def test_first_repetition_read_leaves_the_rest_unread() -> None:
    msg = audited(parse(TEXT))
    assert isinstance(msg, AuditMessage)
    assert msg.delimiters is not STANDARD_DELIMITERS  # raw-text caches are bypassed
    tq1, rxe = msg["TQ1"], msg["RXE"]
    assert tq1[3].subcomponents(1)[0] == "A"
    assert rxe[7].component(2) == "一"
    left = {(c.where, c.repetition, c.component) for c in unread(msg)}
    assert ("TQ1-3", 2, 1) in left and ("RXE-7", 2, 1) in left
    assert ("TQ1-3", 1, 1) not in left and ("RXE-7", 1, 2) not in left
    assert ("RXE-7", 1, 1) in left and ("RXE-7", 1, 3) in left
    # reading every repetition through .repetitions marks them
    for rep in rxe[7].repetitions:
        rep.components()
    for rep in tq1[3].repetitions:
        rep.component(1)
    left = {(c.where, c.repetition) for c in unread(msg)}
    assert ("RXE-7", 2) not in left and ("TQ1-3", 2) not in left
    assert ("TQ1-6", 1) in left and ("RXE-2", 1) in left and ("MSH-9", 1) in left


def test_get_text_and_raw_fields_are_reads() -> None:
    msg = audited(parse(TEXT))
    rxe = msg["RXE"]
    assert rxe.get(3) == "1"
    assert rxe[2].text == "X^drug^L"
    fs = msg["TQ1"].fields
    assert (fs + [""] * 3)[6] == "5^d"
    left = {c.where for c in unread(msg)}
    assert "RXE-3" not in left and "RXE-2" not in left and "TQ1-6" not in left
    assert "TQ1-3" in left
