"""Read YAML while keeping where every key and value came from (file, line, column).

PyYAML's composer gives each node a start mark; we walk the node tree
ourselves instead of calling `yaml.safe_load`, so that the plain data and a
map `path -> position` come out together. The walk also rejects what
safe_load would silently accept or crash on: duplicate keys, non-scalar
keys, absurd nesting, alias bombs and numbers too long to convert.

Numbers resolve as in YAML 1.2's core schema: `3.0e11` and `1e-3` are numbers
(PyYAML's YAML 1.1 rules read them as strings), `1:30`, `0b11` and `1_000` are
strings (1.1: 90, 3, 1000), and `010`, which 1.1 reads as octal 8 and 1.2 as 10,
is a located error.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmspec.errors import Problem

MAX_DEPTH = 64  # a spec is four levels deep; anything past this is junk
MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
MAX_BYTES = 4 * 1024 * 1024  # a spec is a few kB; this keeps binary junk cheap to reject
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
PATH_MAX = 4096  # bytes in a whole path (Linux)

Path_ = tuple  # a path into the data: ("data", "sources", 0, "path")


@dataclass(frozen=True)
class Pos:
    """Where something is in a file; line and column are 1-based (None: the file as a whole)."""

    file: str
    line: int | None = None
    col: int | None = None


@dataclass
class Located:
    """Plain YAML data plus the position of every value and every mapping key in it."""

    data: Any
    file: str
    values: dict[Path_, Pos] = field(default_factory=dict)
    keys: dict[Path_, Pos] = field(default_factory=dict)

    def value_pos(self, path: Path_) -> Pos:
        """Position of the value at `path`, else of its nearest ancestor, else the file."""
        for n in range(len(path), -1, -1):
            pos = self.values.get(tuple(path[:n]))
            if pos is not None:
                return pos
        return Pos(self.file)

    def pos_for(self, path: Path_, related: tuple[Path_, ...] = ()) -> Pos:
        """Where to point for `path`: its value if the file gives one; for a default, a related
        field the file gives, else the key of the nearest enclosing section the file gives
        (`train:`), else the start of the document."""
        for candidate in (tuple(path), *map(tuple, related)):
            if candidate in self.values:
                return self.values[candidate]
        path = tuple(path)
        for n in range(len(path) - 1, 0, -1):
            pos = self.keys.get(path[:n]) or self.values.get(path[:n])
            if pos is not None:
                return pos
        return self.values.get(()) or Pos(self.file)

    def key_pos(self, path: Path_) -> Pos:
        """Position of the key that holds `path` (falls back to the value position)."""
        return self.keys.get(tuple(path)) or self.value_pos(path)


class YamlProblem(Exception):
    """Reading failed; carries one located problem."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


# YAML 1.2 core schema for numbers. PyYAML resolves YAML 1.1, where `010` is octal 8,
# `1:30` is sexagesimal 90, `0b11` is binary and `1_000` is 1000, while `1e-3` is a string.
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_INT_12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_12 = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


_SURROGATE = re.compile("[\ud800-\udfff]")


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema ints and floats."""

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
        if digits.startswith(("0o", "0x")):
            return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
        if len(digits) > 1 and digits[0] == "0":
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{text} has a leading zero: YAML 1.1 reads it as octal, YAML 1.2 as decimal; "
                f"write {sign * int(digits)} (or 0o{digits.lstrip('0') or '0'} for octal)",
                node.start_mark,
            )
        return sign * int(digits)


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(_INT, _INT_12, list("-+0123456789"))  # ints before floats
_SpecLoader.add_implicit_resolver(_FLOAT, _FLOAT_12, list("-+0123456789."))
_SpecLoader.add_constructor(_INT, _SpecLoader.construct_yaml_int)


def read_yaml_file(path: str | Path, display: str | None = None) -> Located:
    """Read a spec file; every failure becomes a `YamlProblem` located in that file.

    Only a regular file is read, and at most MAX_BYTES + 1 bytes of it: a FIFO
    would block forever, /dev/zero would never end, and a 2 GB file would be read
    whole just to be rejected."""
    name = display or str(path)
    return read_yaml_bytes(read_spec_bytes(path, name), name)


def read_spec_bytes(path: str | Path, name: str) -> bytes:
    """At most MAX_BYTES + 1 bytes of the regular file at `path`, or a located `YamlProblem`."""

    def fail(message: str, code: str, hint: str = "") -> YamlProblem:
        return YamlProblem(Problem(message, file=name, code=code, hint=hint))

    try:
        why = not_a_spec_file(path)
        if why is not None and why.startswith("no such file"):
            raise fail(why, "no-file", "check the path")
        if why is not None:
            raise fail(why, "not-a-file", "pass a .yaml file, e.g. specs/tiny-cpu.yaml")
        # O_NONBLOCK: should a FIFO replace the file after the check, opening it does not wait
        # for a writer; fstat then says what was opened.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise fail("not a regular file", "not-a-file", "pass a .yaml file")
            chunks, left = [], MAX_BYTES + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise fail("no such file", "no-file", "check the path") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}", "unreadable") from None
    except ValueError as exc:  # a NUL or an unencodable character in the name
        raise fail(f"cannot read: {bad_path_reason(str(path)) or exc}", "unreadable") from None


_KINDS = (
    (stat.S_ISDIR, "is a directory, not a spec file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def not_a_spec_file(path: str | Path) -> str | None:
    """Why `path` cannot be read as a spec ("no such file", "is a FIFO ..."), or None.

    Raises OSError (e.g. name too long) and ValueError (NUL in the name) for the caller."""
    try:
        mode = os.stat(path).st_mode  # stat never blocks, not even on a FIFO
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a parent in the path is a file)"
    for test, why in _KINDS:
        if test(mode):
            return why
    return None if stat.S_ISREG(mode) else "not a regular file"


def bad_path_reason(text: str) -> str | None:
    """What makes `text` unusable as a file path on this system, or None."""
    if "\x00" in text:
        return "the path contains a NUL character"
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        return "the path contains a character no file name can hold (a lone surrogate?)"
    if len(encoded) > PATH_MAX:
        return f"the path is longer than {PATH_MAX} bytes"
    longest = max((len(part) for part in encoded.split(os.sep.encode())), default=0)
    if longest > NAME_MAX:
        return f"a name in the path is longer than {NAME_MAX} bytes (the file-system limit)"
    return None


def read_yaml_bytes(raw: bytes, name: str) -> Located:
    if len(raw) > MAX_BYTES:
        raise YamlProblem(
            Problem(
                f"file is larger than {MAX_BYTES // 1024 // 1024} MiB; a spec is a small YAML file",
                file=name,
                code="too-large",
            )
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlProblem(
            Problem(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); is this a binary file?",
                file=name,
                line=line,
                col=col,
                code="not-text",
                hint="a spec is a UTF-8 YAML file",
            )
        ) from None
    return read_yaml_text(text, name)


def read_yaml_text(text: str, name: str) -> Located:
    try:
        loader = _SpecLoader(text)  # the reader rejects control characters right here
    except yaml.YAMLError as exc:
        raise YamlProblem(_reader_error_problem(exc, text, name)) from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlProblem(
                Problem("nested too deeply to be a spec", file=name, code="too-deep")
            ) from None
        except yaml.MarkedYAMLError as exc:
            raise YamlProblem(_yaml_error_problem(exc, name)) from None
        except yaml.YAMLError as exc:  # ReaderError: control characters, NUL bytes
            raise YamlProblem(_reader_error_problem(exc, text, name)) from None
        located = Located(data=None, file=name)
        if node is None:
            raise YamlProblem(
                Problem(
                    "the file is empty; a spec is a YAML mapping such as `name: my-run`",
                    file=name,
                    line=1,
                    col=1,
                    code="empty",
                    hint="start from an example: specs/tiny-cpu.yaml",
                )
            )
        walker = _Walker(loader, located)
        located.data = walker.walk(node, (), 0)
        return located
    finally:
        loader.dispose()


def _mark_pos(mark, name: str) -> Pos:
    return Pos(name, mark.line + 1, mark.column + 1) if mark is not None else Pos(name)


def _yaml_error_problem(exc: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    pos = _mark_pos(mark, name)
    message = (
        " ".join(part for part in (exc.context or "", exc.problem or "") if part) or "invalid YAML"
    )
    hint = "check indentation and quoting; a value containing ': ' or '#' needs quotes"
    if "expected a single document" in message:
        hint = "a spec is one YAML document; remove the extra '---' section"
    return Problem(
        f"YAML syntax error: {message}",
        file=pos.file,
        line=pos.line,
        col=pos.col,
        code="yaml-syntax",
        hint=hint,
    )


def _reader_error_problem(exc: yaml.YAMLError, text: str, name: str) -> Problem:
    offset = getattr(exc, "position", None)
    line = col = None
    if isinstance(offset, int):
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Problem(
        f"not a YAML text file: {getattr(exc, 'reason', exc)}",
        file=name,
        line=line,
        col=col,
        code="not-text",
        hint="a spec is a UTF-8 YAML file without control characters",
    )


class _Walker:
    """Turns composed nodes into plain dicts/lists/scalars, recording positions."""

    def __init__(self, loader: _SpecLoader, out: Located):
        self.loader = loader
        self.out = out
        self.nodes = 0

    def fail(self, message: str, node, code: str, hint: str = "") -> YamlProblem:
        pos = _mark_pos(node.start_mark, self.out.file)
        return YamlProblem(
            Problem(message, file=pos.file, line=pos.line, col=pos.col, code=code, hint=hint)
        )

    def walk(self, node, path: tuple, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"more than {MAX_NODES} values (alias expansion?)", node, "too-large")
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep", node, "too-deep")
        self.out.values[path] = _mark_pos(node.start_mark, self.out.file)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(f"unsupported YAML tag {node.tag}", node, "yaml-tag")
            return [self.walk(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self.fail(f"cannot read this value: {exc.problem}", node, "yaml-value") from None
        except (ValueError, OverflowError) as exc:
            # e.g. an integer literal longer than Python's 4300-digit conversion limit
            raise self.fail(f"cannot read this number: {exc}", node, "yaml-value") from None
        if isinstance(value, str) and _SURROGATE.search(value):
            raise self.fail(
                f"'{value.encode('unicode_escape').decode('ascii')[:60]}' contains a lone "
                "surrogate (a \\ud800-\\udfff escape), which no UTF-8 text can hold",
                node,
                "not-text",
                hint="write the character itself, or its \\U0001xxxx escape",
            )
        return value

    def _mapping(self, node, path: tuple, depth: int) -> dict:
        if node.tag != "tag:yaml.org,2002:map":
            raise self.fail(f"unsupported YAML tag {node.tag}", node, "yaml-tag")
        own_keys = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        except yaml.MarkedYAMLError as exc:
            raise YamlProblem(_yaml_error_problem(exc, self.out.file)) from None
        result: dict = {}
        first_seen: dict = {}  # key -> (line, written in this mapping rather than merged in)
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(
                    "a key must be a plain word, not a list or mapping", key_node, "yaml-key"
                )
            key = self._scalar(key_node)
            try:
                hash(key)
            except TypeError:
                raise self.fail("this key cannot be used", key_node, "yaml-key") from None
            own = id(key_node) in own_keys
            child = (*path, key)
            if key in first_seen:
                first_line, first_own = first_seen[key]
                if own and first_own:
                    raise self.fail(
                        f"duplicate key {key!r} (first given on line {first_line})",
                        key_node,
                        "duplicate-key",
                        hint="remove one of them; YAML would silently keep only the last",
                    )
                self._forget(child)  # a key written here overrides one merged in with <<
            first_seen[key] = (key_node.start_mark.line + 1, own)
            self.out.keys[child] = _mark_pos(key_node.start_mark, self.out.file)
            result[key] = self.walk(value_node, child, depth + 1)
        return result

    def _forget(self, path: tuple) -> None:
        n = len(path)
        for table in (self.out.values, self.out.keys):
            for stale in [p for p in table if p[:n] == path]:
                del table[stale]


def dotted(path: tuple) -> str:
    """("data", "sources", 0, "path") -> "data.sources[0].path"."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
