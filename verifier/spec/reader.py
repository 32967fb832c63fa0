"""Source text of a property file and its tokens, with file:line:col positions for error messages.

Tokenising is the hot path for large files (a CIFAR property has ~70,000 tokens), so the tokens are
produced by string splitting, without positions. Positions are recovered only when an error is reported:
the text is tokenised a second time with a position-tracking regular expression, which yields the same
token sequence, and the offending token is looked up by its index.
"""

from __future__ import annotations

import re

from verifier.errors import SpecError

_COMMENT = re.compile(r";[^\n]*")
_POSITIONED_TOKEN = re.compile(r";[^\n]*|[()]|[^\s();]+")


class Source:
    """The text of one property file, split into tokens (``(``, ``)`` and symbols; comments dropped)."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.tokens: list[str] = _COMMENT.sub("", text).replace("(", " ( ").replace(")", " ) ").split()
        self._offsets: list[int] | None = None

    def offset(self, token: int) -> int:
        """Character offset of token number ``token`` in the text (the end of the text past the last token)."""
        if self._offsets is None:
            self._offsets = [m.start() for m in _POSITIONED_TOKEN.finditer(self.text) if m.group()[0] != ";"]
        return self._offsets[token] if token < len(self._offsets) else len(self.text)

    def line_col(self, token: int) -> tuple[int, int]:
        """1-based line and column of token number ``token``."""
        offset = self.offset(token)
        line = self.text.count("\n", 0, offset) + 1
        column = offset - self.text.rfind("\n", 0, offset)
        return line, column

    def where(self, token: int) -> str:
        """``name:line:col`` of token number ``token``."""
        line, column = self.line_col(token)
        return f"{self.name}:{line}:{column}"

    def error(self, token: int, message: str) -> SpecError:
        """A :class:`SpecError` located at token number ``token``."""
        return SpecError(f"{self.where(token)}: {message}")
