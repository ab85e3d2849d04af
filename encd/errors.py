"""One family of errors for the whole domain.

Every error says who is at fault and what was expected.  Three kinds matter to
callers, and the API maps each to one HTTP status:

- ``InvalidInput``: the bytes or values given are malformed (a field breaks
  its rule).  Carries ``field`` (a dotted path) so a client knows what to fix.
- ``VerificationError``: well-formed input that does not verify (a bad
  signature, a proof that does not reach the root, an unknown or revoked key).
- ``RuleViolation``: a correctly signed event that the title or party rules forbid
  (wrong signer, wrong state, cargo already in a live document).  Carries the
  rule's name.
"""

from __future__ import annotations


class Error(Exception):
    """Base of every error encd raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def prefixed(self, prefix: str) -> Error:
        """The same error with ``prefix: `` in front of its message (outer steps add context)."""
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone.message = f"{prefix}: {self.message}"
        if isinstance(clone, InvalidInput):
            field = getattr(self, "field", "")
            clone.field = f"{prefix}.{field}" if field else prefix
        Exception.__init__(clone, clone.message)
        return clone


class InvalidInput(Error):
    """Malformed input: a field does not follow its rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class VerificationError(Error):
    """Well-formed input that does not verify."""


class RuleViolation(Error):
    """A correctly signed event that the title or party rules forbid."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class Conflict(RuleViolation):
    """An event signed against a head that is no longer the document's head."""

    def __init__(self, message: str, current_seq: int, current_head: str | None) -> None:
        super().__init__("chain", message)
        self.current_seq = current_seq
        self.current_head = current_head
