"""Sweeps: papermill runs a notebook at every grid point, and the results are collected."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kangaroo_lite.bench.sweep import grid_points, load_grid, scalar_metrics
from kangaroo_lite.cli import main


@pytest.fixture
def grid_file(tmp_path):
    notebook = new_notebook(cells=[
        new_code_cell("x = 1\nscale = 1.0\nresult_json = ''", metadata={"tags": ["parameters"]}),
        new_code_cell("import json\nif result_json:\n"
                      "    json.dump({'x': x, 'metrics': {'y': x * scale}}, open(result_json, 'w'))"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "toy.ipynb")
    path = tmp_path / "grid.yaml"
    path.write_text("notebook: toy.ipynb\nparameters: {scale: 2.0}\ngrid:\n  x: [1, 2, 3]\n")
    return path


def test_grid_points_are_the_product_of_the_axes():
    assert grid_points({"a": [1, 2], "b": ["u", "v"]}) == [
        {"a": 1, "b": "u"}, {"a": 1, "b": "v"}, {"a": 2, "b": "u"}, {"a": 2, "b": "v"}]


def test_a_sweep_executes_the_notebook_at_every_point_and_collects_its_metrics(grid_file, tmp_path):
    out = tmp_path / "out"
    main(["sweep", str(grid_file), "--out", str(out)])
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["x"], r["y"]) for r in rows] == [(1, 2.0), (2, 4.0), (3, 6.0)]
    assert len(list(out.glob("point_*.ipynb"))) == 3
    assert "Plotly.newPlot" in (out / "sweep.html").read_text()


def test_a_grid_file_without_a_grid_or_notebook_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("notebook: nowhere.ipynb\ngrid: {x: [1]}\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_grid(bad)
    bad.write_text("notebook: nowhere.ipynb\n")
    with pytest.raises(ValueError, match="grid"):
        load_grid(bad)


def test_scalar_metrics_flatten_the_top_level_and_the_metrics_dict():
    assert scalar_metrics({"a": 1, "b": [1], "metrics": {"c": 2.0}}) == {"a": 1, "c": 2.0}


def test_committed_example_grids_are_valid():
    from kangaroo_lite.models.loading import DATA_DIR

    for path in sorted((DATA_DIR.parent / "experiments").glob("*.yaml")):
        spec = load_grid(path)
        assert grid_points(spec["grid"])
