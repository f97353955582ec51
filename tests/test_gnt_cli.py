"""``neural3d gnt`` argument parsing: options and ``key=value`` overrides in any order."""

from __future__ import annotations

import pytest

from neural3d.cli.main import build_parser

IMPORT_ORDERS = [
    ["gnt", "import", "m.pth", "--data", "S", "--out", "R", "model.n_samples=8", "data.factor=4"],
    ["gnt", "import", "m.pth", "model.n_samples=8", "data.factor=4", "--data", "S", "--out", "R"],
    ["gnt", "import", "--data", "S", "m.pth", "model.n_samples=8", "--out", "R", "data.factor=4"],
    ["gnt", "import", "--out", "R", "--data", "S", "m.pth", "model.n_samples=8", "data.factor=4"],
]


@pytest.mark.parametrize("argv", IMPORT_ORDERS)
def test_import_takes_overrides_after_the_options(argv):
    args = build_parser().parse_args(argv)
    assert args.checkpoint == "m.pth" and args.data == "S" and args.out == "R" and args.pixel_center == 0.0
    assert args.overrides == ["model.n_samples=8", "data.factor=4"]


def test_eval_and_render_take_options_between_positionals_and_overrides():
    args = build_parser().parse_args(["gnt", "eval", "RUN", "--split", "val", "SCENE", "model.n_samples=6"])
    assert (args.run_dir, args.scene, args.split, args.overrides) == ("RUN", "SCENE", "val", ["model.n_samples=6"])
    args = build_parser().parse_args(
        ["gnt", "render", "RUN", "SCENE", "--out", "o.mp4", "data.factor=2", "--frames", "3", "model.n_fine=4"]
    )
    assert (args.run_dir, args.scene, args.out, args.frames) == ("RUN", "SCENE", "o.mp4", 3)
    assert args.overrides == ["data.factor=2", "model.n_fine=4"]


def test_missing_required_option_and_unknown_option_still_fail():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gnt", "import", "m.pth", "model.n_samples=8", "--out", "R"])  # no --data
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gnt", "import", "m.pth", "--data", "S", "--out", "R", "--bogus", "1"])
