"""`kangaroo-lite notebooks DIR` copies the course and never overwrites a learner's edits; where data is written."""

from pathlib import Path

import pytest

from kangaroo_lite import cli
from kangaroo_lite.cli.course import copy_course, course_dir

COURSE = sorted(p.name for p in course_dir().glob("*.ipynb"))


def test_the_course_is_found_in_the_package_or_the_checkout():
    assert len(COURSE) >= 8 and COURSE[0].startswith("00_")


def test_copies_every_notebook_into_a_new_folder_and_says_how_to_open_it(tmp_path, capsys):
    cli.main(["notebooks", str(tmp_path / "my course")])
    assert sorted(p.name for p in (tmp_path / "my course").iterdir()) == COURSE
    assert f"jupyter lab '{tmp_path / 'my course'}'" in capsys.readouterr().out


def test_a_second_copy_keeps_a_changed_notebook_and_names_it(tmp_path, capsys):
    copy_course(tmp_path)
    edited = tmp_path / COURSE[1]
    edited.write_text("my notes")
    (tmp_path / COURSE[2]).unlink()
    cli.main(["notebooks", str(tmp_path)])
    out = capsys.readouterr().out
    assert edited.read_text() == "my notes"
    assert f"kept {COURSE[1]}" in out and "1 notebook copied" in out
    assert (tmp_path / COURSE[2]).read_bytes() == (course_dir() / COURSE[2]).read_bytes()


def test_identical_notebooks_already_there_are_fine(tmp_path):
    copy_course(tmp_path)
    report = copy_course(tmp_path)
    assert report.copied == [] and report.kept == [] and report.unchanged == COURSE


def test_a_file_as_destination_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("x")
    with pytest.raises(SystemExit, match="notes.txt is a file"):
        cli.main(["notebooks", str(target)])
    with pytest.raises(ValueError, match="is a file"):
        copy_course(target)


def test_an_empty_source_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        copy_course(tmp_path / "out", source=tmp_path)


@pytest.mark.parametrize("argv", [["make-data"], ["train-adapter"]])
def test_an_installed_package_data_is_written_only_when_named(monkeypatch, argv):
    monkeypatch.setattr(cli, "DATA_IS_INSTALLED", True)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(argv)
    assert cli.build_parser().parse_args([*argv, "--out", "somewhere"]).out == "somewhere"


@pytest.mark.parametrize("argv", [["make-data"], ["train-adapter"]])
def test_a_checkout_writes_into_its_data_folder_by_default(monkeypatch, argv):
    monkeypatch.setattr(cli, "DATA_IS_INSTALLED", False)
    assert Path(cli.build_parser().parse_args(argv).out).is_relative_to(cli.DATA_DIR)
