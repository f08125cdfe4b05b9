"""The input boundary: reading the files users give (scenarios, traces, lengths files, config.json,
hardware YAML, profiles) and turning every mistake in them into one `SpecError` line that names the file,
the field, the value and what is allowed. Each reader validates its file once, here and in the spec's own
module (a scenario's keys in infersim/schema.py's pydantic models); nothing past that sees text, NaN or a
value out of range.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterator

import yaml

from .errors import HugeNumber, SpecError


def _file_problem(path: Path) -> str | None:
    """Why `path` is not a readable regular file, or None if it is one."""
    try:
        if path.is_dir():
            return "is a folder, not a file"
        if not path.exists():
            return "no such file"
        if not path.is_file():
            return "is not a regular file"
    except (OSError, ValueError) as err:  # a name too long, a NUL byte
        return f"is not a usable file path ({getattr(err, 'strerror', None) or err})"
    return None


def check_readable(path: Path, field: str) -> None:
    """One line saying why the file cannot be read (missing, a folder, ...), if it cannot; `field` is what
    named it."""
    problem = _file_problem(path)
    if problem:
        raise SpecError(field, problem, str(path))


def read_text(path: Path, field: str) -> str:
    """A text file's contents (UTF-8; a byte-order mark is dropped), or one line saying why it cannot be
    read. `field` is what named the file (a scenario key, a flag)."""
    check_readable(path, field)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpecError(field, f"cannot be read ({err.strerror})", str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError("", f"is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                        "save it as UTF-8", file=path.name) from None


MAX_DIGITS = 4300  # Python converts no longer number (int_max_str_digits): such a number is described instead
_WHOLE = re.compile(r"\s*([+-]?)0*([0-9]+)\s*")


def whole_number(text: str) -> int:
    """int(text), except that a number written with more than MAX_DIGITS digits is a HugeNumber (beyond
    any field's range, and quoted as "a 5001-digit number") rather than Python's ValueError."""
    match = _WHOLE.fullmatch(text)
    if match and len(match[2]) > MAX_DIGITS:
        return HugeNumber(len(match[2]), match[1] == "-")
    return int(text)


class _Refused(yaml.MarkedYAMLError):
    """What the loader refuses where PyYAML would read on: a key given twice, a number YAML 1.1 reads in
    another base than the one it looks written in; `field` is where in the file (`workload.num_requests`)."""

    def __init__(self, field: str, problem: str, problem_mark):
        super().__init__(problem=problem, problem_mark=problem_mark)
        self.field = field


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML silently
    keeps the last one), and so is a number YAML 1.1 reads in a base it does not look written in: a leading
    zero makes it octal (0512 is 330) and colons base 60 (1:20 is 80). Merge keys (`<<: *defaults`) merge as YAML says: a key set beside them overrides
    the merged one, and is no duplicate. Each refusal names where it stands as the fields' own errors write
    it (`workload.num_requests`, `cascade.tiers.1.replicas`): a mapping or list is constructed before what it
    holds, so it records its values' places (`_places`, by node) for them."""

    def __init__(self, stream):
        super().__init__(stream)
        self._places: dict[int, str] = {}

    def _place(self, node) -> str:
        return self._places.get(id(node), "")

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # PyYAML's flatten_mapping (in the safe loader's construct_mapping) merges them
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float)):
                continue  # an unhashable key is PyYAML's own error
            place = f"{self._place(node)}.{key}" if self._place(node) else str(key)
            if key in seen:
                raise _Refused(place, "appears twice in one mapping; keep one", key_node.start_mark)
            seen.add(key)
            self._places.setdefault(id(value_node), place)  # an alias's node keeps its first place
        return super().construct_mapping(node, deep)

    def construct_sequence(self, node, deep=False):
        for i, item in enumerate(node.value):
            self._places.setdefault(id(item), f"{self._place(node)}.{i}")
        return super().construct_sequence(node, deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node).replace("_", "")
        digits = text.lstrip("+-")
        if digits.isdigit() and (digits == "0" or not digits.startswith("0")):  # decimal
            return whole_number(text)
        value = super().construct_yaml_int(node)
        if ":" in digits:
            self._refuse_base_60(node, value)
        if digits.isdigit():
            raise _Refused(self._place(node), f"{text} has a leading zero, so YAML reads it as the octal number "
                           f"{value}; write {text[:-len(digits)]}{int(digits)} (or quote it, for text)", node.start_mark)
        return value  # 0x... and 0b... say their base

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if ":" in self.construct_scalar(node):
            self._refuse_base_60(node, value)
        return value

    def _refuse_base_60(self, node, value) -> None:
        text = self.construct_scalar(node)
        raise _Refused(self._place(node), f"{text} has colons, so YAML reads it in base 60, as {value:g}; write "
                       f"the number you mean (or quote it, for text)", node.start_mark)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_yaml_float)


def parse_json(text: str):
    """JSON text's data, whole numbers of any length included (see `whole_number`); a key given twice in
    one object, or a number too large for a float (json.loads would read 1e400 as Infinity), is a SpecError
    naming it (json.loads would keep the last key)."""
    return json.loads(text, parse_int=whole_number, parse_float=_finite_float, object_pairs_hook=_unique_keys)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise SpecError("", "holds a number beyond a float's range (1.8e308): write Infinity where a value is "
                        "unbounded", text)
    return value


def _unique_keys(pairs: list) -> dict:
    data = dict(pairs)
    if len(data) < len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise SpecError(twice, "appears twice in one object; keep one")
    return data


def load_json(path: Path, field: str, what: str):
    """A JSON file's data (see `parse_json`); a syntax error (a truncated or empty file) or a duplicate key
    is one line naming the file. `field` is what named the file, `what` the kind of file it should be."""
    return _parsed(read_text(path, field), path.name, what)


def load_json_records(path: Path, field: str, what: str) -> list[tuple[str, object]]:
    """The JSON values a file holds, each with where it is: the whole file's one value (named by the file), or,
    where the file is JSON Lines (a value a line, as benchmark clients append their runs), each line's
    (file:line). Errors as `load_json`'s."""
    text = read_text(path, field)
    try:
        return [(path.name, parse_json(text))]
    except json.JSONDecodeError as err:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        if err.msg == "Extra data" and len(lines) > 1:
            return [(f"{path.name}:{number}", _parsed(line, f"{path.name}:{number}", what, json_lines=True))
                    for number, line in lines]
    except (RecursionError, SpecError):
        pass
    return [(path.name, _parsed(text, path.name, what))]  # raises what the first reading found, as load_json words it


def _parsed(text: str, where: str, what: str, json_lines: bool = False):
    """`parse_json(text)`, its errors one line naming `where` (a line of a JSON Lines file if `json_lines`)."""
    try:
        return parse_json(text)
    except json.JSONDecodeError as err:
        position = (f"column {err.colno}); a JSON Lines file holds one value a line" if json_lines
                    else f"line {err.lineno}, column {err.colno})")
        raise SpecError("", f"is not valid JSON ({err.msg}: {position}", file=where) from None
    except RecursionError:
        raise SpecError("", f"is nested too deeply to be {what}", file=where) from None
    except SpecError as err:
        raise err.in_file(where) from None


def load_yaml(path: Path, field: str):
    """A YAML file's data; a syntax error, a duplicate key or no data at all is one line naming the file (and
    line)."""
    text = read_text(path, field)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _Refused as err:
        raise SpecError(err.field, err.problem, file=f"{path.name}:{err.problem_mark.line + 1}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError("", f"is not valid YAML ({problem})",
                        file=f"{path.name}:{mark.line + 1}" if mark else path.name) from None
    except RecursionError:
        raise SpecError("", "is nested too deeply to be a spec", file=path.name) from None
    if data is None:  # every spec file is a mapping; say why there is none rather than "got NoneType"
        raise SpecError("", "is empty (it holds no YAML data, only blank lines or comments)", file=path.name)
    return data


def bound_text(value) -> str:
    """A bound as a reader writes it: 16,777,216 rather than 1.67772e+07; 0.01; 1e-06."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15)
    return f"{int(value):,}" if whole else f"{value:g}"


# What infersim prints must print as itself. A name inside a file (a scenario's, a model's, a GPU's) that
# holds a control character (ESC would restyle the terminal, a newline forge a line) or a lone surrogate
# (which no encoding writes) is refused where it is read; a file's own name, which the user's system chose,
# is shown with such characters escaped.
_UNPRINTABLE = ("Cc", "Cs")
UNPRINTABLE_NAME = "must be printable text (no control characters or lone surrogates)"


def unprintable(text: str, lines: bool = False) -> bool:
    """Whether `text` holds a control character (besides line breaks and tabs if `lines`, as a description
    may) or a lone surrogate."""
    return any(unicodedata.category(c) in _UNPRINTABLE and not (lines and c in "\n\t") for c in text)


def shown(name: str) -> str:
    """A file's name as infersim prints it: control characters and undecodable bytes escaped."""
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in _UNPRINTABLE else c for c in name)


def _a(noun: str) -> str:
    """The noun with its indefinite article."""
    return f"{'an' if noun[0].lower() in 'aeiou' else 'a'} {noun}"


def registry_or_file(field: str, text, registry: dict, what: str, file_kind: str, suffixes: tuple,
                     base: Path | None = None):
    """The one rule for a value that is a registry name or a file path (`--model`, `--hardware`, a
    scenario's model and hardware): a registry name wins; anything else names a file, relative paths
    from `base` (the scenario's folder) or else the working directory. Returns the entry or the path."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(field, f"must be {_a(what)} name or {_a(file_kind)} path", text)
    if text in registry:
        return registry[text]
    path = Path(text) if base is None else base / text
    problem = _file_problem(path)
    if problem is None:
        return path
    if problem == "no such file" and not ("/" in text or os.sep in text or text.endswith(suffixes)):
        raise SpecError(field, f"unknown {what}; use {_a(file_kind)} path or one of "
                        f"{', '.join(sorted(registry))}", text)
    where = " (relative paths start at the scenario file's folder)" if base is not None else ""
    raise SpecError(field, problem + where, str(path))


def read_rows(path: Path, field: str) -> Iterator[tuple[str, dict]]:
    """The rows of a CSV file (a header line, then one row a line) or a JSONL file (one object a line),
    each with where it is (`file:line`) for error messages. Rows longer than the header and files without
    rows are refused (a short row's missing cells are None)."""
    text = read_text(path, field)
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = _jsonl_rows(path, text)
    else:
        rows = _csv_rows(path, text)
    empty = True
    for where, row in rows:
        empty = False
        yield where, row
    if empty:
        raise SpecError("", "holds no rows", file=path.name)


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{line_no}"
        try:
            row = parse_json(line)
        except (json.JSONDecodeError, RecursionError) as err:
            raise SpecError("", f"is not valid JSON ({getattr(err, 'msg', 'nested too deeply')})",
                            line.strip()[:40], file=where) from None
        except SpecError as err:
            raise err.in_file(where) from None
        if not isinstance(row, dict):
            raise SpecError("", "must be a JSON object of columns, e.g. {\"prompt_tokens\": 10, ...}",
                            row, file=where)
        yield where, row


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    """A CSV file's rows; spaces around a column name or a cell (`model, hardware` as people type it) are
    not part of it. A quote left open or text after a closing quote is an error (strict), not a row that
    swallows the lines below it."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    lines_read = 0  # before the row being parsed: a csv.Error's line_num is not always that row's
    try:
        if reader.fieldnames:
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
        twice = [name for i, name in enumerate(reader.fieldnames or ()) if name and name in reader.fieldnames[:i]]
        if twice:  # DictReader would keep the last column of the name
            raise SpecError(twice[0], "appears twice in the header; keep one", file=f"{path.name}:{reader.line_num}")
        lines_read = reader.line_num
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            if None in row:
                raise SpecError("", f"has {len(reader.fieldnames) + len(row[None])} cells but the header has "
                                f"{len(reader.fieldnames)}", file=where)
            yield where, {column: cell.strip() if isinstance(cell, str) else cell for column, cell in row.items()}
            lines_read = reader.line_num
    except csv.Error as err:
        raise SpecError("", f"is not valid CSV ({err})", file=f"{path.name}:{lines_read + 1}") from None


def number_cell(row: dict, column: str, where: str, **allowed) -> float:
    """A CSV or JSONL cell as a number (see `number`), the error naming file:line and column."""
    return number(row.get(column), column, where, **allowed)


def number(value, field: str, where: str, *, whole: bool = False, minimum: float = 0.0, maximum: float = math.inf,
           text: bool = True) -> float:
    """`value` as a finite number (a whole one if `whole`) from `minimum` to `maximum`, or one line naming
    the file (`where`, with its line for a CSV row), the field, the value and what is allowed. Text that
    spells a number is one (a CSV cell is text); `text=False` refuses it where a JSON file must hold a
    number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SpecError(field, "is empty or missing", file=where)
    parsed = math.nan
    if (isinstance(value, str) and text) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            parsed = float(value)
        except (ValueError, OverflowError):
            pass
    if not (math.isfinite(parsed) and minimum <= parsed <= maximum) or (whole and parsed != int(parsed)):
        kind = "finite whole number" if whole else "finite number"
        allowed = (f">= {bound_text(minimum)}" if maximum == math.inf
                   else f"from {bound_text(minimum)} to {bound_text(maximum)}")
        quoted = " (a JSON number, not text)" if isinstance(value, str) and not text else ""
        raise SpecError(field, f"must be a {kind} {allowed}{quoted}", value, file=where)
    return parsed
