"""pydantic validation errors → located `Problem`s a person can act on.

pydantic reports a location inside its own schema: union members appear as
extra steps (`parallel.data.constrained-int`, `cluster.gpu.GpuOverride`).
We walk each location along the actual YAML data to find the real field,
drop the union members that cannot apply (a mapping was given, so the
string member's complaint is noise), merge what is left per field into one
"expected X or Y, got Z" line, and attach did-you-mean hints.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections import defaultdict

from pydantic import BaseModel, ValidationError

from llmspec.errors import Problem
from llmspec.spec.schema import SLUG_RE
from llmspec.spec.source import Located, dotted

_TYPE_NOUNS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "finite_number": "a finite number",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def validation_problems(
    exc: ValidationError, located: Located, model: type[BaseModel], prefix: tuple = ()
) -> list[Problem]:
    """Problems for `exc`, raised validating `model` on the data at `prefix` of `located`."""
    errors = [_Error.make(err, located, prefix) for err in exc.errors()]
    errors = _drop_inapplicable_union_members(errors, located)
    by_field: dict[tuple, list[_Error]] = defaultdict(list)
    for err in errors:
        by_field[(err.path, err.kind)].append(err)
    return [_problem(group, located, model, prefix) for group in by_field.values()]


class _Error:
    def __init__(self, raw: dict, path: tuple, union_at: tuple | None, member: str | None):
        self.raw = raw
        self.type = raw["type"]
        self.path = path  # real path in the data
        self.union_at = union_at  # data path where pydantic tried union members
        self.member = member
        self.kind = {"extra_forbidden": "extra", "missing": "missing"}.get(self.type, "value")

    @classmethod
    def make(cls, raw: dict, located: Located, prefix: tuple) -> _Error:
        node = _at(located.data, prefix)
        path = list(prefix)
        union_at = member = None
        loc = raw["loc"]
        for i, part in enumerate(loc):
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                path.append(part)
            elif raw["type"] in ("missing", "invalid_key") and i == len(loc) - 1:
                path.append(part)
            elif isinstance(part, str) and union_at is None:
                union_at, member = tuple(path), part  # a union member's name, not a key
        return cls(raw, tuple(path), union_at, member)


def _at(data, path: tuple):
    for part in path:
        data = data[part]
    return data


def _drop_inapplicable_union_members(errors: list[_Error], located: Located) -> list[_Error]:
    """Given a mapping where a model may stand, only the model member's complaints apply."""
    keep = []
    for err in errors:
        if err.union_at is not None and isinstance(_at(located.data, err.union_at), dict):
            model_members = [
                e for e in errors if e.union_at == err.union_at and e.member[:1].isupper()
            ]
            if model_members and not err.member[:1].isupper():
                continue
        keep.append(err)
    return keep


def _problem(group: list[_Error], located: Located, model: type[BaseModel], prefix) -> Problem:
    first = group[0]
    path = first.path
    field = dotted(path)
    if first.kind == "extra":
        pos = located.key_pos(path)
        names = _field_names(model, path[len(prefix) : -1])
        key = path[-1]
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        parent = dotted(path[:-1]) or "the top level"
        hint = f"fields of {parent}: " + ", ".join(names) if names else ""
        message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
        return _located(pos, field, message, hint, "unknown-field")
    if first.kind == "missing" and isinstance(path[-1], int):  # a fixed-length list too short
        return _located(
            located.value_pos(path[:-1]),
            dotted(path[:-1]),
            f"the list is too short: item [{path[-1]}] is missing",
            "",
            "value",
        )
    if first.kind == "missing":
        pos = located.pos_for(path)
        return _located(
            pos, field, "required field is missing", f"add `{path[-1]}:` here", "missing-field"
        )
    if first.type == "invalid_key":
        pos = located.key_pos(path)
        return _located(pos, field, f"key {path[-1]!r} is not a name", "keys are words", "type")

    pos = located.value_pos(path)
    value = first.raw.get("input")
    if len(group) == 1 and first.type == "value_error":
        message = str(first.raw.get("ctx", {}).get("error", first.raw["msg"]))
        return _located(pos, field, message, "", "value")
    if len(group) == 1 and first.type == "string_pattern_mismatch" and path == ("name",):
        return _located(
            pos,
            field,
            f"{value!r} is not a slug: use lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
            f"e.g. name: {_slugify(str(value))}",
            "value",
        )
    wanted, hints = [], []
    for err in group:
        phrase, hint = _expected(err)
        if phrase not in wanted:
            wanted.append(phrase)
        if hint and hint not in hints:
            hints.append(hint)
    if any(e.type in _BOUNDS or e.type == "string_too_long" for e in group):
        # a range error: the field's description says what the range is for
        info = _field_info(model, path[len(prefix) :])
        if info is not None and info.description and info.description not in hints:
            hints.append(info.description)
    if isinstance(value, str) and _YAML_11_NUMBER.fullmatch(value):
        hints.append(
            "specs are read as YAML 1.2: numbers have no '_' separators, ':' (sexagesimal) or "
            "0b prefix; write plain digits"
        )
    message = f"expected {' or '.join(wanted)}, got {show_value(value)}"
    code = "type" if all(e.type in _TYPE_NOUNS for e in group) else "value"
    return _located(pos, field, message, " ".join(hints), code)


# What YAML 1.1 (PyYAML) would read as a number and YAML 1.2 reads as a string.
_YAML_11_NUMBER = re.compile(
    r"[-+]?(?:0b[01_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[0-9][0-9_]*(?:\.[0-9_]*)?)"
)


def _expected(err: _Error) -> tuple[str, str]:
    raw, ctx = err.raw, err.raw.get("ctx") or {}
    if err.type in _TYPE_NOUNS:
        return _TYPE_NOUNS[err.type], ""
    if err.type in _BOUNDS:
        name, sign = _BOUNDS[err.type]
        return f"a value {sign} {ctx.get(name)}", ""
    if err.type == "literal_error":
        choices = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        options = [a or b for a, b in choices]
        got = raw.get("input")
        close = difflib.get_close_matches(str(got), options, n=1) if isinstance(got, str) else []
        hint = f"did you mean {close[0]!r}?" if close else ""
        quoted = [o if o.isdigit() else repr(o) for o in options]
        return (quoted[0] if len(quoted) == 1 else "one of " + ", ".join(quoted)), hint
    if err.type == "too_short":
        return f"at least {ctx.get('min_length')} item(s)", ""
    if err.type == "too_long":
        return f"at most {ctx.get('max_length')} item(s)", ""
    if err.type == "string_too_long":
        return f"at most {ctx.get('max_length')} characters", ""
    if err.type == "value_error":
        return str(ctx.get("error", raw["msg"])), ""
    return raw["msg"], ""


def show_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, int) and abs(value) >= 10**40:
        return f"a {len(str(abs(value)))}-digit integer"
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, str) and len(value) > 40:
        return f"{text[:37]}... ({len(value)} characters)"
    return text if len(text) <= 40 else text[:37] + "..."


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug if re.fullmatch(SLUG_RE, slug or "") else "my-run"


def _field_names(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the model that holds `path` (list indices skipped)."""
    current: type | None = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(part)
        current = _model_in(info.annotation) if info else None
    return list(current.model_fields) if current else []


def _field_info(model: type[BaseModel], path: tuple):
    """The FieldInfo of the field at `path` (list indices skipped), or None."""
    current: type | None = model
    info = None
    for part in path:
        if isinstance(part, int):
            continue
        if current is None:
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _model_in(info.annotation)
    return info


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _located(pos, field: str, message: str, hint: str, code: str) -> Problem:
    return Problem(
        message, field=field, file=pos.file, line=pos.line, col=pos.col, hint=hint, code=code
    )
