"""Load a spec file into a validated `Spec`, or raise `SpecError` with every problem located.

Steps: read YAML with positions (source.py) → follow `extends` and fill the
preset (resolve.py) → pydantic validation (diagnostics.py turns its errors
into located problems) → cross-field checks (checks.py). Problems from all
steps are reported together; nothing else escapes for any input.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from llmspec.errors import Problem, SpecError
from llmspec.spec import checks_posttrain  # noqa: F401  (registers its checks)
from llmspec.spec.checks import run_checks
from llmspec.spec.diagnostics import validation_problems
from llmspec.spec.resolve import Resolution, resolve_file, resolve_text
from llmspec.spec.schema import Spec
from llmspec.spec.source import Located
from llmspec.spec.sweep_space import set_dotted

SECTIONS = (
    "model",
    "data",
    "train",
    "parallel",
    "cluster",
    "tracking",
    "rlhf",
    "finetune",
    "eval",
    "sweep",
)
# Sections that always exist: `model: null` means its defaults. Optional ones (rlhf, ...)
# stay null when written null, so that `llmspec show` output loads to the same spec.
ALWAYS_PRESENT = ("model", "data", "train", "parallel", "cluster", "tracking")


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec with where each of its values came from."""

    spec: Spec
    source: Located  # merged data; positions name the file that supplied each value
    files: tuple[str, ...]  # every file read (the spec, then what it extends)


def load_spec(path: str | Path, *, env: Mapping[str, str] | None = None) -> Spec:
    """The validated spec at `path`; raises SpecError listing every problem."""
    return load_located(path, env=env).spec


def load_located(path: str | Path, *, env: Mapping[str, str] | None = None) -> LoadedSpec:
    return _finish(resolve_file(path, env))


def load_spec_text(
    text: str, name: str = "<spec>", *, env: Mapping[str, str] | None = None
) -> Spec:
    """As load_spec for YAML text in memory (`extends` is relative to the working directory)."""
    return _finish(resolve_text(text, name, env)).spec


def with_overrides(loaded: LoadedSpec, overrides: Mapping[str, object]) -> LoadedSpec:
    """`loaded` with dotted paths set to new values (a sweep variant), validated and checked
    as a file that said so would be; raises SpecError. Problems point at the original file."""
    data = copy.deepcopy(loaded.source.data)
    for path, value in overrides.items():
        set_dotted(data, path, value)
    located = dataclasses.replace(loaded.source, data=data)
    return _finish(Resolution(located, files=list(loaded.files)))


def _finish(resolution: Resolution) -> LoadedSpec:
    problems = list(resolution.problems)
    located = resolution.located
    if located is None:
        raise SpecError(_ordered(problems))
    # `parallel:` with every line commented out is YAML null: read it as an empty section.
    located.data = {
        k: {} if v is None and k in ALWAYS_PRESENT else v for k, v in located.data.items()
    }
    spec = None
    try:
        spec = Spec.model_validate(located.data)
    except ValidationError as exc:
        problems += validation_problems(exc, located, Spec)
    except (RecursionError, OverflowError, ValueError, TypeError) as exc:  # defensive: junk input
        problems.append(Problem(f"cannot validate: {exc}", file=located.file, code="value"))
    if resolution.complete:
        sections, invalid = _sections(spec, located.data)
        problems += run_checks(sections, located.pos_for, invalid)
    if problems:
        raise SpecError(_ordered(problems))
    return LoadedSpec(spec, located, tuple(resolution.files))


def _sections(
    spec: Spec | None, data: dict
) -> tuple[dict[str, BaseModel | None], frozenset[tuple[str, str]]]:
    """The validated sections, and the (section, field) pairs that had to be left at defaults.

    When the spec fails validation, each section is validated alone with its
    invalid fields removed, so the cross-field checks still see every valid
    value and all problems are reported in one run. A section that cannot be
    validated even so (e.g. a list where the mapping belongs) is None.
    """
    if spec is not None:
        return {name: getattr(spec, name) for name in SECTIONS}, frozenset()
    sections: dict[str, BaseModel | None] = {}
    invalid: set[tuple[str, str]] = set()
    for name in SECTIONS:
        field = Spec.model_fields[name]
        value = data.get(name) if name in data else field.get_default(call_default_factory=True)
        sections[name] = None
        model = _section_model(field.annotation)
        if value is None:  # an optional section left out
            continue
        invalid.add((name, ""))  # until it validates below: present in the spec, not usable
        for _ in range(3):  # each round drops the fields that failed; nested failures may surface
            try:
                sections[name] = model.model_validate(value)
                invalid.discard((name, ""))
                break
            except ValidationError as exc:
                bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
                if not isinstance(value, dict) or not bad & set(value):
                    break
                invalid |= {(name, str(key)) for key in bad}
                value = {k: v for k, v in value.items() if k not in bad}
            except (ValueError, TypeError, RecursionError):
                break
    return sections, frozenset(invalid)


def _section_model(annotation):
    """The model class of a section, also of an optional one (`RlhfSpec | None`)."""
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    return members[0] if members else annotation


def _ordered(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file or "", p.line or 0, p.col or 0))
