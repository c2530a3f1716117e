"""`llmspec build` never removes or overwrites a file it did not write (issue 16, items 1, 10).

Each test sets up a folder as a user might have it, runs the real build, and
compares every user file byte for byte afterwards.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from llmspec.cli.main import main
from llmspec.codegen import write as write_module
from llmspec.errors import UserError
from llmspec.pipeline import build_project

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "specs" / "tiny-cpu.yaml"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: bytes and permission bits."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    target = tmp_path / "specs" / "tiny-cpu.yaml"
    target.parent.mkdir()
    shutil.copyfile(TINY, target)
    return target


@pytest.fixture
def built(spec: Path, tmp_path: Path) -> Path:
    out = tmp_path / "proj"
    build_project(spec, out)
    return out


def test_folder_with_user_files_is_refused_and_left_byte_identical(spec, tmp_path, capsys):
    """The reproduction from the issue: README.md and a copy of a generated train.py."""
    user = tmp_path / "u"
    user.mkdir()
    (user / "README.md").write_text("mine\n")
    shutil.copyfile(ROOT / "generated" / "tiny-cpu" / "train.py", user / "backup.py")
    before = snapshot(user)
    code = main(["build", str(spec), "-o", str(user)])
    err = capsys.readouterr().err
    assert code == 2
    assert "README.md" in err and "backup.py" in err and "nothing was written" in err
    assert "Traceback" not in err
    assert snapshot(user) == before
    assert sorted(p.name for p in user.iterdir()) == ["README.md", "backup.py"]


def test_build_into_the_current_checkout_is_refused(spec, tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "specs/tiny-cpu.yaml", "-o", "."]) == 2
    assert "pyproject.toml" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["", "file", "file/under", "/dev/null"])
def test_output_paths_that_cannot_hold_a_project_get_a_clear_error(
    spec, tmp_path, monkeypatch, capsys, target
):
    (tmp_path / "file").write_text("keep me\n")
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(spec), "-o", target]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "keep me\n"


def test_an_edited_generated_file_blocks_the_rebuild_and_is_kept(built: Path, spec: Path):
    train = built / "train.py"
    edited = train.read_text().replace("seq_len = 128", "seq_len = 64")
    train.write_text(edited)
    before = snapshot(built)
    with pytest.raises(UserError, match=r"train\.py \(changed since llmspec wrote it\)"):
        build_project(spec, built, layout="micro_batch_size=2")
    assert snapshot(built) == before


def test_an_unchanged_project_rebuilds_over_itself_and_user_additions_survive(built, spec):
    (built / "notes.txt").write_text("mine\n")
    (built / "out").mkdir()
    (built / "out" / "metrics.jsonl").write_text('{"step": 1}\n')
    result = build_project(spec, built, layout="micro_batch_size=2")
    assert "train.py" in result.written and "ds_config.json" in result.written
    assert (built / "notes.txt").read_text() == "mine\n"
    assert (built / "out" / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert not [p for p in built.iterdir() if p.name.startswith(".llmspec-staging")]
    assert build_project(spec, built, layout="micro_batch_size=2", check=True).ok


def test_a_file_placed_where_the_build_will_write_blocks_it(built, spec):
    """A user file at a path the last build did not own (the manifest lacks it)."""
    manifest = built / ".llmspec-build.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"launch_torchrun.sh"', '"launch_torchrun_old.sh"'))
    (built / "launch_torchrun.sh").write_text("#!/bin/sh\necho mine\n")
    before = snapshot(built)
    with pytest.raises(UserError, match=r"launch_torchrun\.sh \(not written by llmspec\)"):
        build_project(spec, built)
    assert snapshot(built) == before


def test_a_failing_write_leaves_the_old_project_intact(built, spec, monkeypatch):
    before = snapshot(built)
    calls = {"n": 0}
    real_stage = write_module._stage

    def full_disk(folder, files):
        real_stage(folder, dict(list(files.items())[:1]))
        calls["n"] += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write_module, "_stage", full_disk)
    with pytest.raises(UserError, match="No space left on device"):
        build_project(spec, built, layout="micro_batch_size=2")
    assert calls["n"] == 1
    assert snapshot(built) == before
    assert not [p for p in built.iterdir() if p.name.startswith(".llmspec-staging")]


def test_a_failing_first_build_leaves_no_half_project(spec, tmp_path, monkeypatch):
    def full_disk(folder, files):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write_module, "_stage", full_disk)
    with pytest.raises(UserError):
        build_project(spec, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs"]


def test_check_sees_crlf_and_a_lost_executable_bit(built, spec):
    launch = built / "launch.sh"
    launch.write_bytes(launch.read_bytes().replace(b"\n", b"\r\n"))
    slurm = built / "slurm.sbatch"
    slurm.chmod(0o644)
    result = build_project(spec, built, check=True)
    assert set(result.drift) == {"launch.sh", "slurm.sbatch"}
    assert "CRLF" in result.diff and "mode 644" in result.diff


def test_spec_paths_with_control_characters_or_comment_closers_stay_inert(tmp_path):
    """A CR / VT in a spec path must not end the header comment; `--->` must not close
    the README's HTML comment."""
    folder = tmp_path / "we\rird\x0b--->dir"
    folder.mkdir()
    shutil.copyfile(TINY, folder / "tiny-cpu.yaml")
    result = build_project(folder / "tiny-cpu.yaml", tmp_path / "proj")
    ruff_toml = result.files["ruff.toml"]
    import tomllib

    tomllib.loads(ruff_toml)  # a broken comment line would be a TOML syntax error
    for name, text in result.files.items():
        assert "\r" not in text and "\x0b" not in text, name
    readme = result.files["README.md"]
    assert readme.startswith("<!-- ")
    end = readme.index("-->")
    assert "Regenerate:" in readme[:end], "the header comment closed before its end"
