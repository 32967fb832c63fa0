"""Source text of a property file and its tokens, with file:line:col positions for error messages.

:func:`read_text` reads a property file, plain or gzip-compressed (VNN-COMP ships ``.vnnlib.gz``; the
compression is recognised by its magic bytes), within a limit on the unpacked size that is checked while
reading, so a small ``.gz`` that unpacks to gigabytes stops at the limit; a truncated or corrupt archive
is a one-line :class:`~verifier.errors.SpecError`.

Tokenising is the hot path for large files (a CIFAR property has ~70,000 tokens), so the tokens are
produced by string splitting, without positions. Positions are recovered only when an error is reported:
the text is tokenised a second time with a position-tracking regular expression, which yields the same
token sequence, and the offending token is looked up by its index.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

from verifier.errors import ResourceLimitError, SpecError
from verifier.limits import format_bytes

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def read_text(path: str | os.PathLike, max_bytes: int) -> str:
    """The text of a property file (gzip-compressed or not), at most ``max_bytes`` bytes once unpacked."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                size = os.fstat(raw.fileno()).st_size
                if size > max_bytes:
                    raise _too_large(path, size, max_bytes)
                data = raw.read(max_bytes + 1)
            else:
                data = _gunzip(raw, path, max_bytes)
    except IsADirectoryError:
        raise SpecError(f"cannot read property file {path}: it is a folder") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SpecError(f"cannot read property file {path}: {reason}") from None
    if len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: byte {error.start} is not UTF-8 text; a VNN-LIB file is plain text") from None


def _gunzip(raw, path: Path, max_bytes: int) -> bytes:
    parts, total = [], 0
    try:
        with gzip.GzipFile(fileobj=raw) as unpacked:
            while True:
                chunk = unpacked.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(path, total, max_bytes, unpacked=True)
                parts.append(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        reason = "it ends early (truncated)" if isinstance(error, EOFError) else str(error)
        raise SpecError(f"cannot read property file {path}: corrupt gzip data: {reason}") from None
    return b"".join(parts)


def _too_large(path: Path, size: int, limit: int, unpacked: bool = False) -> ResourceLimitError:
    what = "unpacks to more than" if unpacked else f"has {format_bytes(size)}, more than"
    return ResourceLimitError(f"property file {path} {what} the limit of {format_bytes(limit)} "
                              "(--load-limit-gib / memory_limit= raises it)")

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
