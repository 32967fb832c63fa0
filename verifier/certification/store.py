"""``DIR/certify.csv``: rows written as they are done (flushed and synced), read back by ``--resume``.

``DIR/run.json`` holds the settings the rows were made with; a resumed run must have the same ones (the
model, the dataset's fingerprint, epsilons, norm, methods...), or the rows would mix two experiments. A line
cut short by a kill is dropped (and the file truncated to the last whole line), so the input is redone.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from verifier.certification.result import format_value, parse_value
from verifier.errors import VerifierError

#: settings that may differ between a run and its resumption (they do not change the rows' meaning)
VOLATILE = {"device", "progress", "files", "notes", "limit", "count"}


class RowStore:
    """The CSV file of a run in ``directory``: opened fresh (``overwrite``), resumed (``resume``), or created."""

    def __init__(self, directory: str | os.PathLike, fields: list[str], settings: dict, resume: bool = False,
                 overwrite: bool = False):
        self.directory = Path(directory)
        self.path = self.directory / "certify.csv"
        self.settings_path = self.directory / "run.json"
        self.fields = fields
        self.rows: list[dict] = []
        self.directory.mkdir(parents=True, exist_ok=True)
        comparable = {k: v for k, v in settings.items() if k not in VOLATILE}
        if self.path.exists() and resume:
            self._check_settings(comparable)
            self.rows = self._read()
        elif self.path.exists() and not overwrite:
            raise VerifierError(f"{self.path} exists: use --resume to continue that run or --overwrite to start "
                                "again (or another --out)")
        else:
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(fields)
                handle.flush()
                os.fsync(handle.fileno())
        self.settings_path.write_text(json.dumps(comparable, indent=2, default=str) + "\n")

    @property
    def done(self) -> set[int]:
        return {row["index"] for row in self.rows}

    def write(self, rows: list[dict]) -> None:
        """Append rows and make them durable before returning."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow([format_value(row[field]) for field in self.fields])
        with open(self.path, "a", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.extend(rows)

    def _check_settings(self, settings: dict) -> None:
        if not self.settings_path.exists():
            raise VerifierError(f"cannot resume: {self.settings_path} is missing, so the settings of the rows in "
                                f"{self.path} are unknown; use --overwrite")
        try:
            previous = json.loads(self.settings_path.read_text())
        except ValueError:
            raise VerifierError(f"cannot resume: {self.settings_path} is not valid JSON; use --overwrite") from None
        current = json.loads(json.dumps(settings, default=str))
        differ = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if differ:
            detail = "; ".join(f"{k}: {previous.get(k)!r} then, {current.get(k)!r} now" for k in differ[:3])
            raise VerifierError(f"cannot resume {self.path}: the run's settings changed ({detail}); use the same "
                                "options, or --overwrite")

    def _read(self) -> list[dict]:
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # a line cut short by a kill
            text = text[: text.rfind("\n") + 1]
            with open(self.path, "w", newline="") as handle:
                handle.write(text)
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header != self.fields:
            raise VerifierError(f"cannot resume {self.path}: its columns differ from this run's; use --overwrite")
        rows = []
        for line in reader:
            if len(line) != len(self.fields):
                continue
            try:
                rows.append({field: parse_value(field, value) for field, value in zip(self.fields, line)})
            except ValueError:
                continue
        return rows
