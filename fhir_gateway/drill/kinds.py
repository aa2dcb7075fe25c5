"""Every problem kind the drill report can contain, with its Japanese and English label.

Storage-level kinds are defined where they are detected (``storage.reader``,
``storage.structure``); the kinds only the drill detects are defined here.  The labels live in
one table so the JSON report, the HTML report and the docs say the same thing.
"""

from __future__ import annotations

from storage import reader, structure

ERROR = reader.ERROR
WARNING = reader.WARNING

KIND_VERSION_CHAIN = "version-chain"
KIND_STALE = "stale-data-type"
KIND_REPLICA_MISSING = "replica-missing"
KIND_REPLICA_DIFFERS = "replica-differs"
KIND_REPLICA_LAG = "replica-lag"
KIND_REPLICA_UNREADABLE = "replica-unreadable"
KIND_RECEIPT_PARSE = "receipt-parse"
KIND_RECEIPT_TOTAL = "receipt-total"
KIND_RECEIPT_UNLINKED = "receipt-unlinked"
KIND_UNMAPPED = "unmapped-content"  # mappers.audit (the content ledger)

LABELS: dict[str, tuple[str, str]] = {
    reader.KIND_NAME: ("ファイル名が規則違反", "file name breaks the rule"),
    reader.KIND_MISPLACED: ("フォルダ配置の誤り", "misplaced file or folder"),
    reader.KIND_EMPTY: ("空ファイル", "zero bytes"),
    reader.KIND_BINARY: ("バイナリデータ", "binary data"),
    reader.KIND_DECODE: ("文字コード解読不能", "decode failure"),
    reader.KIND_REPLACED: ("置換文字あり", "replacement characters"),
    reader.KIND_ENCODING: ("ISO-2022-JP以外の文字コード", "wrong encoding"),
    reader.KIND_NONSTANDARD: ("機種依存文字", "non-standard characters"),
    reader.KIND_LINE_ENDINGS: ("改行コードの誤り", "line endings"),
    reader.KIND_NOT_HL7: ("HL7メッセージでない", "not HL7"),
    reader.KIND_TRUNCATED: ("途中で切れている", "truncated"),
    reader.KIND_TYPE: ("データ種別とメッセージ型の不一致", "type mismatch"),
    reader.KIND_MOJIBAKE: ("文字化けの疑い", "mojibake"),
    reader.KIND_IO: ("読み取りエラー", "I/O error"),
    reader.KIND_MAPPING: ("FHIR変換エラー", "mapping error"),
    KIND_UNMAPPED: ("FHIRに変換されない内容", "unmapped content"),
    structure.KIND_STRUCTURE: ("HL7 v2.5 構造違反", "message structure"),
    structure.KIND_REQUIRED_FIELD: ("必須項目の欠落", "required field missing"),
    structure.KIND_SUSPICIOUS: ("成分数の異常(エスケープ漏れの疑い)", "suspicious components"),
    KIND_VERSION_CHAIN: ("版管理(コンディションフラグ)の矛盾", "version chain"),
    KIND_STALE: ("データ種別の更新停止", "data type stopped arriving"),
    KIND_REPLICA_MISSING: ("複製間でファイル欠落", "missing on a replica"),
    KIND_REPLICA_DIFFERS: ("複製間で内容が異なる", "content differs between replicas"),
    KIND_REPLICA_LAG: ("複製の遅れ", "replica lag"),
    KIND_REPLICA_UNREADABLE: ("複製を読めない", "replica unreadable"),
    KIND_RECEIPT_PARSE: ("レセプト読込エラー", "receipt does not parse"),
    KIND_RECEIPT_TOTAL: ("レセプト合計不一致", "receipt totals disagree"),
    KIND_RECEIPT_UNLINKED: ("患者に紐付かないレセプト", "receipt not linked to a patient"),
}


def label(kind: str) -> tuple[str, str]:
    return LABELS.get(kind, (kind, kind))


def problem(path: str, kind: str, reason: str, severity: str = ERROR, **extra) -> dict:
    """A problem as it appears in the JSON report."""
    d = {"path": path, "kind": kind, "severity": severity, "reason": reason}
    d.update({k: v for k, v in extra.items() if v is not None})
    return d
