"""Load a students CSV, refusing bad input with one line that names file, row and column.

Rows are counted as a spreadsheet shows them: the header is row 1, the first student row 2.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch

FEATURES = ("hours_studied", "hours_slept", "previous_score")
CLASSES = ("PASS", "FAIL")  # output 0 is PASS confidence, output 1 is FAIL confidence
REQUIRED = ("name", *FEATURES, "label")
OPTIONAL = ("split",)
SPLITS = ("train", "heldout")
# The lesson records every number of every step; past this a per-sample lesson stops being readable
# and the log stops being small. Bigger data belongs to `nn-lesson bridge`.
MAX_ROWS = 10_000
MAX_BYTES = 50_000_000  # far above MAX_ROWS rows of any sensible width: refuse before reading it all
LABELS = {"pass": 0, "fail": 1, "1": 0, "0": 1}  # 1/0 are accepted as PASS/FAIL
# A name is shown in tables, on diagrams, in run folders' pages and terminal lines: a longer one is refused at
# load, so every command can show every name the lesson accepted.
MAX_NAME = 100
RANGES = {"hours_studied": (0.0, 24.0), "hours_slept": (0.0, 24.0), "previous_score": (0.0, 100.0)}


class DataError(ValueError):
    """Bad student data; str() is the one line shown to the user."""

    def __init__(self, path: str | Path, message: str, row: int | None = None, column: str | None = None):
        where = str(path)
        if row is not None:
            where += f": row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column = str(path), row, column


@dataclass(frozen=True)
class StudentTable:
    """Students as tensors. features: (N, 3) float32 raw values; labels: (N,) int64, 0 = PASS."""

    names: tuple[str, ...]
    features: torch.Tensor
    labels: torch.Tensor
    heldout: torch.Tensor  # (N,) bool: never trained on
    source: str            # the data file's name (never its path: a shared run must not carry a home folder)
    sha256: str = ""       # of the file's bytes, so a run says exactly which data it learned from

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, mask: torch.Tensor) -> "StudentTable":
        keep = mask.nonzero().flatten().tolist()
        return StudentTable(
            tuple(self.names[i] for i in keep), self.features[mask], self.labels[mask],
            self.heldout[mask], self.source, self.sha256,
        )

    def training(self) -> "StudentTable":
        return self.subset(~self.heldout)

    def held_out(self) -> "StudentTable":
        return self.subset(self.heldout)


def lesson_csv_path() -> Path:
    return Path(__file__).with_name("students.csv")


def load_students(path: str | Path | None = None) -> StudentTable:
    """Read and validate a students CSV (the lesson's own when path is None)."""
    path = Path(path) if path is not None else lesson_csv_path()
    raw = _read_bytes(path)
    text = _decode(path, raw)
    # Rows are counted as a spreadsheet shows them: one per record (a quoted name spanning lines is one
    # row, a blank line is a row too), the header being row 1.
    records = _records(path, text)
    _, header = next(records, (1, None))
    if header is None or not any(cell.strip() for cell in header):
        raise DataError(path, "the file is empty; expected a header row " + ",".join(REQUIRED))
    _check_bytes(path, 1, None, header)
    header = [cell.strip() for cell in header]
    columns = _check_header(path, header)

    names, rows, labels, heldout = [], [], [], []
    for row, record in records:
        if not any(cell.strip() for cell in record):
            continue  # blank lines are layout, not students
        _check_bytes(path, row, header, record)
        _check_quotes(path, row, header, record, text)
        if len(names) >= MAX_ROWS:
            raise DataError(path, f"more than {MAX_ROWS} students; the lesson records every step of every "
                            "student, so it stops here (use `nn-lesson bridge` for a big data set)", row)
        if len(record) != len(header):
            raise DataError(path, f"has {len(record)} cells, the header has {len(header)}", row)
        cells = {name: record[i].strip() for name, i in columns.items()}
        for name, value in cells.items():
            if value == "" and name != "split":
                raise DataError(path, "empty cell", row, name)
        if len(cells["name"]) > MAX_NAME:
            raise DataError(path, f"a name of {len(cells['name'])} characters; at most {MAX_NAME}", row, "name")
        names.append(cells["name"])
        rows.append([_number(path, row, name, cells[name]) for name in FEATURES])
        labels.append(_label(path, row, cells["label"]))
        heldout.append(_split(path, row, cells.get("split", "")))

    if not names:
        raise DataError(path, "has a header but no students")
    if all(heldout):
        raise DataError(path, "every student is held out; at least one must have split 'train'")
    trained_on = {label for label, held in zip(labels, heldout) if not held}
    if len(trained_on) < 2:
        only = "PASS" if trained_on == {0} else "FAIL"
        raise DataError(path, f"every training student is {only}; the network needs at least one PASS and one "
                        "FAIL student to learn from")
    return StudentTable(
        tuple(names), torch.tensor(rows, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64),
        torch.tensor(heldout, dtype=torch.bool), path.name, hashlib.sha256(raw).hexdigest(),
    )


def _records(path: Path, text: str):
    """(row, cells) for each CSV record; the csv module's own errors (a cell beyond its field limit of
    131,072 characters, say) become one DataError naming the row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    row = 0
    while True:
        row += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            limit = "field larger than field limit" in str(err)
            raise DataError(path, f"a cell longer than {csv.field_size_limit()} characters, the CSV reader's limit"
                            if limit else f"cannot be read as CSV ({err})", row) from None
        yield row, record


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, "is a directory, expected a CSV file")
    if not path.is_file():  # a device such as /dev/zero, a FIFO or a socket: reading could never end
        raise DataError(path, "is not a regular file (a device, pipe or socket), expected a CSV file")
    if path.stat().st_size > MAX_BYTES:
        raise DataError(path, f"is larger than {MAX_BYTES // 1_000_000} MB; the lesson takes at most {MAX_ROWS} "
                        "students (use `nn-lesson bridge` for a big data set)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot be read ({err.strerror})") from None
    return raw


def _decode(path: Path, raw: bytes) -> str:
    """The text, with any byte that is not UTF-8 kept as a lone surrogate: _check_bytes then names the row
    and column it sits in, as the CSV reader (quotes and all) sees them."""
    if b"\x00" in raw:
        row = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError(path, "is a binary file (it holds NUL bytes), expected a text CSV", row)
    return raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")


def _check_bytes(path: Path, row: int, header: list[str] | None, record: list[str]) -> None:
    for i, cell in enumerate(record):
        bad = next((c for c in cell if "\udc80" <= c <= "\udcff"), None)
        if bad is not None:
            column = header[i].strip() if header is not None and i < len(header) else None
            raise DataError(path, f"is not UTF-8 text (byte 0x{ord(bad) - 0xdc00:02x}); save it as UTF-8 CSV",
                            row, column)


def _check_quotes(path: Path, row: int, header: list[str], record: list[str], text: str) -> None:
    """A quote opened and never closed swallows the rest of the file into one cell: name where it opened."""
    for i, cell in enumerate(record):
        if "\n" in cell and text.rstrip("\r\n").endswith(cell.rstrip("\r\n")) and text.count('"') % 2:
            column = header[i] if i < len(header) else None
            raise DataError(path, 'a quote (") opened here is never closed; it swallows the rest of the file',
                            row, column)


def _check_header(path: Path, header: list[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise DataError(path, "duplicate column in the header", 1, name)
        if name not in REQUIRED + OPTIONAL:
            raise DataError(path, "unknown column; expected " + ",".join(REQUIRED) + " and optionally split",
                            1, name)
        seen[name] = i
    for name in REQUIRED:
        if name not in seen:
            raise DataError(path, "missing column in the header", 1, name)
    return seen


def _number(path: Path, row: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"'{text}' is not a number", row, column) from None
    if not math.isfinite(value):
        raise DataError(path, f"'{text}' is not a finite number", row, column)
    low, high = RANGES[column]
    if not low <= value <= high:
        unit = "hours" if column.startswith("hours") else "a score in %"
        raise DataError(path, f"{text} is outside {low:g}..{high:g} ({unit})", row, column)
    return value


def _label(path: Path, row: int, text: str) -> int:
    try:
        return LABELS[text.lower()]
    except KeyError:
        raise DataError(path, f"unknown label '{text}'; expected PASS or FAIL (or 1/0)", row, "label") from None


def _split(path: Path, row: int, text: str) -> bool:
    text = text.lower() or "train"
    if text not in SPLITS:
        raise DataError(path, f"unknown split '{text}'; expected train or heldout", row, "split")
    return text == "heldout"
