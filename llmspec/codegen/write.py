"""Putting a rendered project on disk without losing anything that is not ours.

A build owns exactly the files its manifest (`.llmspec-build.json`, written
last) lists, with their hashes. It writes into a folder only when the folder
is new, empty, or described by such a manifest, and there it never removes
or overwrites a file unless the bytes on disk are the ones the manifest says
it wrote: a file the user added or edited blocks the build, which names it.
New files are staged first (a sibling folder for a new project, a hidden
folder inside an existing one) and renamed into place only when every one
was written, so a full disk or a dying process leaves the old project as it
was. `out/` is what a run writes and is never looked at.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from llmspec.errors import UserError

MANIFEST = ".llmspec-build.json"
STAGING_PREFIX = ".llmspec-staging-"
RUN_OUTPUT_DIRS = ("out",)  # what a generated project writes at run time; never ours
EXECUTABLE_SUFFIXES = (".sh", ".sbatch")
SHOW_AT_MOST = 20  # blocking paths listed in an error before "... and N more"


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)  # changed or new on disk
    removed: list[str] = field(default_factory=list)  # files of the last build no longer emitted
    kept: list[str] = field(default_factory=list)  # no longer emitted, but edited: left alone
    drift: list[str] = field(default_factory=list)  # check: paths that differ
    diff: str = ""  # check: unified diff of the drift


def is_executable(rel: str, content: str) -> bool:
    return rel.endswith(EXECUTABLE_SUFFIXES) or content.startswith("#!")


def file_mode(rel: str, content: str) -> int:
    return 0o755 if is_executable(rel, content) else 0o644


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_text(files: dict[str, str], header: str) -> str:
    """The manifest of a build: every file it emits, its hash and its mode (deterministic)."""
    entries = {
        rel: {
            "sha256": sha256_bytes(content.encode("utf-8")),
            "mode": f"{file_mode(rel, content):o}",
        }
        for rel, content in sorted(files.items())
    }
    body = {
        "_generated_by": " ".join(header.split("\n")),
        "_what": "files this build wrote; llmspec build overwrites or removes only these, "
        "and only while their bytes are unchanged",
        "files": entries,
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def check_out_dir(out: Path) -> None:
    """A clear error for an output path that cannot hold a project."""
    if str(out) == "":
        raise UserError("-o: the output folder is an empty path; name a folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; name a new or empty folder with -o")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{out}: {parent} is not a folder; name a folder with -o")


def read_manifest(out: Path) -> dict[str, dict] | None:
    """The files of the last build into `out`, or None when `out` holds no manifest."""
    path = out / MANIFEST
    if not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()
        ):
            raise ValueError("files is not a mapping of hashes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path}: unreadable build manifest ({exc}); without it llmspec cannot tell its "
            "files from yours: build into a new folder, or move the folder away"
        ) from None
    return {str(rel): entry for rel, entry in files.items() if _safe_rel(str(rel))}


def _safe_rel(rel: str) -> bool:
    """A manifest path that stays inside the project (a hand-edited manifest is not trusted)."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _user_entries(out: Path) -> list[str]:
    """What a folder without a manifest holds (its top level), for the refusal."""
    return sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())


def _on_disk_hash(path: Path) -> str | None:
    """Hash of a regular file, None for a missing one; anything else is not ours."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        return "not-a-regular-file"
    return sha256_bytes(path.read_bytes())


def _blockers(out: Path, files: dict[str, str], previous: dict[str, dict] | None) -> list[str]:
    """Paths the build would have to overwrite although it did not write them (with why)."""
    blocked = []
    for rel, content in files.items():
        target = out / rel
        for parent in list(Path(rel).parents)[:-1]:
            if os.path.lexists(out / parent) and not (out / parent).is_dir():
                blocked.append(f"{parent.as_posix()} (a file where the build needs a folder)")
        current = _on_disk_hash(target)
        if current is None or current == sha256_bytes(content.encode("utf-8")):
            continue
        owned = (previous or {}).get(rel)
        if owned is None:
            blocked.append(f"{rel} (not written by llmspec)")
        elif current != owned["sha256"]:
            blocked.append(f"{rel} (changed since llmspec wrote it)")
    return sorted(set(blocked))


def _refuse(out: Path, blocked: list[str], why: str, fix: str) -> UserError:
    shown = blocked[:SHOW_AT_MOST]
    more = f"\n  ... and {len(blocked) - len(shown)} more" if len(blocked) > len(shown) else ""
    listing = "".join(f"\n  {item}" for item in shown)
    return UserError(f"{out}: {why}; nothing was written. Blocking:{listing}{more}\n  fix: {fix}")


def write_project(out: Path, files: dict[str, str], header: str) -> WriteResult:
    """Write `files` (relative path → content) into `out`, or refuse without touching it."""
    check_out_dir(out)
    previous = read_manifest(out) if out.is_dir() else None
    if out.is_dir() and previous is None and any(out.iterdir()):
        raise _refuse(
            out,
            _user_entries(out),
            "the folder is not empty and no llmspec build manifest describes it",
            "build into a new or empty folder (-o DIR); llmspec never writes among files "
            "it did not write",
        )
    blocked = _blockers(out, files, previous)
    if blocked:
        raise _refuse(
            out,
            blocked,
            "these files would be overwritten, and llmspec did not write them as they are",
            "move them away (or delete them) and build again; edits belong in the spec",
        )
    result = WriteResult()
    manifest = manifest_text(files, header)
    changed = {
        rel: content
        for rel, content in files.items()
        if _on_disk_hash(out / rel) != sha256_bytes(content.encode("utf-8"))
        or (out / rel).stat().st_mode & 0o777 != file_mode(rel, content)
    }
    try:
        if not out.is_dir():
            _write_new(out, files, manifest)
            result.written = sorted(files)
            return result
        _write_over(out, changed, manifest, result)
    except OSError as exc:
        raise UserError(
            f"{out}: cannot write the project ({exc.strerror or exc}); the folder is as it was"
        ) from None
    for rel in sorted(set(previous or {}) - set(files)):
        target = out / rel
        if _on_disk_hash(target) == previous[rel]["sha256"]:
            target.unlink()
            result.removed.append(rel)
        elif os.path.lexists(target):
            result.kept.append(rel)
    return result


def _stage(folder: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(target, file_mode(rel, content))


def _write_new(out: Path, files: dict[str, str], manifest: str) -> None:
    """A new project: staged whole in a sibling folder, then renamed to its name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{STAGING_PREFIX}"))
    try:
        _stage(staging, {**files, MANIFEST: manifest})
        os.chmod(staging, 0o755)
        if out.is_dir():  # an empty folder (checked by the caller): take its place
            out.rmdir()
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_over(out: Path, changed: dict[str, str], manifest: str, result: WriteResult) -> None:
    """A project of ours: stage what changed inside it, then rename file by file.

    Each rename is atomic; the manifest goes last, and a file already holding the new bytes
    counts as ours on the next build, so even a crash between renames loses nothing.
    """
    manifest_path = out / MANIFEST
    same_manifest = manifest_path.is_file() and manifest_path.read_bytes() == manifest.encode()
    if not changed and same_manifest:
        return
    staging = Path(tempfile.mkdtemp(dir=out, prefix=STAGING_PREFIX))
    try:
        _stage(staging, {**changed, MANIFEST: manifest})
        for rel in sorted(changed):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, out / rel)
            result.written.append(rel)
        os.replace(staging / MANIFEST, manifest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def compare_project(out: Path, files: dict[str, str], header: str) -> WriteResult:
    """`--check`: how `out` differs from a fresh build, in bytes and modes; writes nothing."""
    result = WriteResult()
    chunks: list[str] = []
    previous = read_manifest(out) if out.is_dir() else None
    expected = {**files, MANIFEST: manifest_text(files, header)}
    for rel, content in expected.items():
        target = out / rel
        want = content.encode("utf-8")
        current = target.read_bytes() if target.is_file() else None
        if current == want:
            mode = target.stat().st_mode & 0o777
            if mode != file_mode(rel, content):
                result.drift.append(rel)
                chunks.append(
                    f"--- {rel} (on disk: mode {mode:o})\n"
                    f"+++ {rel} (from the spec: mode {file_mode(rel, content):o})\n"
                )
            continue
        result.drift.append(rel)
        label = rel if current is not None else f"{rel} (missing)"
        old = (current or b"").decode("utf-8", errors="replace")
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"{label} (on disk)",
                tofile=f"{rel} (from the spec)",
            )
        )
        if current is not None and b"\r\n" in current and b"\r\n" not in want:
            chunks.append(f"# {rel}: CRLF line endings on disk; the build writes LF\n")
    for rel in sorted(set(previous or {}) - set(files)):
        if os.path.lexists(out / rel):
            result.drift.append(rel)
            chunks.append(f"--- {rel} (on disk)\n+++ (no longer generated: would be removed)\n")
    result.diff = "".join(chunks)
    return result
