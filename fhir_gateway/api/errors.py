"""Errors as OperationOutcome resources with the right HTTP status."""

from __future__ import annotations

from storage.reader import Problem


class FhirError(Exception):
    def __init__(self, status: int, diagnostics: str, code: str = "processing",
                 headers: dict[str, str] | None = None, severity: str = "error") -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}
        self.severity = severity


def outcome(diagnostics: str, code: str = "processing", severity: str = "error") -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


def problem_outcome(problems: list[Problem]) -> dict:
    """One OperationOutcome for the problems of one file (a ``search.mode = outcome`` entry)."""
    issues = []
    for p in problems:
        issue = {"severity": "error" if p.severity == "error" else "warning",
                 "code": "processing",
                 "details": {"text": p.kind},
                 "diagnostics": f"{p.path}: {p.reason}",
                 "location": [p.path]}
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}
