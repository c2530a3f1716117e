"""Turn a spec file into one mapping: follow `extends`, then fill `model.preset`.

Every value keeps the position of the file that supplied it, so a problem in
a base spec is reported in the base spec, and a value a preset supplied is
reported at the `preset:` line that asked for it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmspec.errors import Problem
from llmspec.spec.diagnostics import show_value
from llmspec.spec.hf_config import HfConfigError, spec_from_hf
from llmspec.spec.interpolate import InterpolationError, expand
from llmspec.spec.presets import PRESETS
from llmspec.spec.source import (
    Located,
    Pos,
    YamlProblem,
    bad_path_reason,
    dotted,
    not_a_spec_file,
    read_yaml_file,
    read_yaml_text,
)


@dataclass
class Resolution:
    """The merged spec data (None when the top file could not be read) and what went wrong."""

    located: Located | None
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every file read, in order, top first
    complete: bool = True  # False when a base or preset is missing: values may be absent


def problem_at(pos: Pos, message: str, *, field_: str = "", hint: str = "", code: str) -> Problem:
    return Problem(
        message, field=field_, file=pos.file, line=pos.line, col=pos.col, hint=hint, code=code
    )


def resolve_file(path: str | Path, env: Mapping[str, str] | None = None) -> Resolution:
    result = Resolution(None)
    env = os.environ if env is None else env
    result.located = _resolve(Path(path), str(path), env, [], result, text=None)
    if result.located is not None:
        _apply_preset(result)
        _apply_hf_base(result)
    return result


def resolve_text(
    text: str, name: str = "<spec>", env: Mapping[str, str] | None = None
) -> Resolution:
    """As resolve_file for text in memory; `extends` is relative to the working directory."""
    result = Resolution(None)
    env = os.environ if env is None else env
    result.located = _resolve(Path(name), name, env, [], result, text=text)
    if result.located is not None:
        _apply_preset(result)
        _apply_hf_base(result)
    return result


def _identity(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError, ValueError):
        return str(path.absolute())


def _resolve(
    path: Path,
    display: str,
    env: Mapping[str, str],
    stack: list[tuple[str, str]],
    result: Resolution,
    text: str | None,
) -> Located | None:
    result.files.append(display)
    try:
        located = (
            read_yaml_text(text, display) if text is not None else read_yaml_file(path, display)
        )
    except YamlProblem as exc:
        result.problems.append(exc.problem)
        return None
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else f"the single value {located.data!r}"
        result.problems.append(
            problem_at(
                located.value_pos(()),
                f"a spec is a mapping of sections (name:, model:, train:, ...), not {kind}",
                hint="see specs/tiny-cpu.yaml or `llmspec schema`",
                code="type",
            )
        )
        return None

    here = [*stack, (_identity(path), display)]
    merged = Located(data={}, file=display)
    targets = _extends_targets(located, path, display, env, result)
    for target, target_display, pos, where in targets:
        seen = [identity for identity, _ in here]
        if _identity(target) in seen:
            chain = [shown for _, shown in here[seen.index(_identity(target)) :]]
            result.problems.append(
                problem_at(
                    pos,
                    "extends cycle: " + " -> ".join([*chain, target_display]),
                    field_=dotted(where),
                    hint="remove one `extends` so that the chain ends",
                    code="extends-cycle",
                )
            )
            result.complete = False
            continue
        try:
            what = not_a_spec_file(target)
        except (OSError, ValueError) as exc:  # e.g. a symlink loop, a parent without permission
            what = f"cannot read it: {getattr(exc, 'strerror', None) or exc}"
        if what is not None:
            result.problems.append(
                problem_at(
                    pos,
                    f"cannot extend {target_display!r}: {what}",
                    field_=dotted(where),
                    hint="paths in extends are relative to the file that names them",
                    code="extends-missing",
                )
            )
            result.complete = False
            continue
        base = _resolve(target, target_display, env, here, result, text=None)
        if base is None:
            result.complete = False
            continue
        merged = merge(merged, base)

    own = Located(data=dict(located.data), file=display, values=located.values, keys=located.keys)
    own.data.pop("extends", None)
    return merge(merged, own, drop=("extends",))


def _extends_targets(located: Located, path: Path, display: str, env, result: Resolution):
    """(file, display name, position of the reference) for each entry of `extends`."""
    value = located.data.get("extends")
    if value is None:
        return []
    entries = [(value, ("extends",))] if isinstance(value, str) else None
    if isinstance(value, list):
        entries = [(item, ("extends", i)) for i, item in enumerate(value)]
    if entries is None:
        result.problems.append(
            problem_at(
                located.value_pos(("extends",)),
                f"expected a path or a list of paths, got {show_value(value)}",
                field_="extends",
                hint="extends: base.yaml",
                code="type",
            )
        )
        result.complete = False
        return []
    targets = []
    for item, where in entries:
        pos = located.value_pos(where)
        if not isinstance(item, str):
            result.problems.append(
                problem_at(
                    pos,
                    f"expected a path, got {show_value(item)}",
                    field_=dotted(where),
                    code="type",
                )
            )
            result.complete = False
            continue
        try:
            expanded = expand(item, env)
        except InterpolationError as exc:
            result.problems.append(
                problem_at(pos, str(exc), field_=dotted(where), hint=exc.hint, code="env")
            )
            result.complete = False
            continue
        why = bad_path_reason(expanded) or bad_path_reason(str(path.parent / expanded))
        if why is not None:
            result.problems.append(
                problem_at(
                    pos,
                    f"cannot extend {show_value(expanded)}: {why}",
                    field_=dotted(where),
                    hint="extends names a spec file by a short path relative to this file",
                    code="extends-missing",
                )
            )
            result.complete = False
            continue
        target = path.parent / expanded
        shown = os.path.normpath(os.path.join(os.path.dirname(display), expanded))
        targets.append((target, shown, pos, where))
    return targets


def merge(base: Located, over: Located, drop: tuple = ()) -> Located:
    """Deep merge: mappings merge key by key, `over` wins; lists and scalars are replaced.

    Positions follow the values: a replaced subtree takes over's positions and
    loses every position base had under it.
    """
    values = dict(base.values)
    keys = dict(base.keys)

    def forget_below(path: tuple) -> None:
        n = len(path)
        for table in (values, keys):
            for stale in [p for p in table if len(p) > n and p[:n] == path]:
                del table[stale]

    def combine(b, o, path: tuple):
        if isinstance(b, dict) and isinstance(o, dict):
            out = dict(b)
            for k, v in o.items():
                out[k] = combine(b[k], v, (*path, k)) if k in b else v
            return out
        forget_below(path)
        return o

    data = combine(base.data, over.data, ())
    for table, extra in ((values, over.values), (keys, over.keys)):
        for p, pos in extra.items():
            if not (p and p[0] in drop):
                table[p] = pos
    return Located(data=data, file=over.file, values=values, keys=keys)


def _apply_preset(result: Resolution) -> None:
    located = result.located
    model = located.data.get("model")
    if not isinstance(model, dict) or model.get("preset") is None:
        return
    name = model["preset"]
    pos = located.value_pos(("model", "preset"))
    if not isinstance(name, str) or name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        result.problems.append(
            problem_at(
                pos,
                f"unknown preset {name!r}",
                field_="model.preset",
                hint=hint + "presets: " + ", ".join(PRESETS),
                code="unknown-preset",
            )
        )
        result.complete = False
        return
    preset = PRESETS[name]
    for key in preset:
        if key not in model:  # the preset supplied it: point at the `preset:` line
            located.values[("model", key)] = pos
            located.keys[("model", key)] = pos
    located.data = {**located.data, "model": {**preset, **model}}


MAX_CONFIG_BYTES = 4 * 2**20


def _apply_hf_base(result: Resolution) -> None:
    """A fine-tune of a Hugging Face folder whose spec has no `model:` takes the architecture
    from the folder's config.json (the table `llmspec import hf` reads); each value points at
    the `finetune.base.path` line that supplied it."""
    located = result.located
    finetune = located.data.get("finetune")
    if located.data.get("model") is not None or not isinstance(finetune, dict):
        return
    base = finetune.get("base")
    if (
        not isinstance(base, dict)
        or base.get("format") != "hf"
        or not isinstance(base.get("path"), str)
    ):
        return
    pos = located.value_pos(("finetune", "base", "path"))
    spec_dir = Path(pos.file).parent if pos.file and Path(pos.file).is_file() else Path.cwd()
    config_path = spec_dir / base["path"] / "config.json"

    def problem(message: str, hint: str) -> None:
        result.problems.append(
            problem_at(pos, message, field_="finetune.base.path", hint=hint, code="hf-base")
        )
        result.complete = False

    if not config_path.is_file():
        problem(
            f"no model: section, and {config_path} does not exist to take it from",
            "write the model: section, or point finetune.base.path at a Hugging Face folder",
        )
        return
    try:
        with open(config_path, "rb") as f:  # bounded: a config.json is a few kB
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes: not a model config")
        config = json.loads(raw)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        imported = spec_from_hf(config)
    except (OSError, ValueError, RecursionError, HfConfigError) as exc:
        problem(f"{config_path}: {exc}", "write the model: section by hand")
        return
    model = imported.model_dict()
    for key in model:
        located.values[("model", key)] = pos
        located.keys[("model", key)] = pos
    located.data = {**located.data, "model": model}
