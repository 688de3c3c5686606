"""Table-driven bad-input suite (``tests/reliability/cases.py``), in-process: every case either fails with a typed
error (exit 2, one ``fcam <cmd>: error:`` line naming the problem, no traceback) or gives the correct result, and
no file that existed before the command changed (content, mode, mtime) nor is a temporary file left behind.

Cases marked ``mem`` run in ``test_memory_bounds.py`` instead, under an address-space limit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcam_deploy.cli import main
from tests._support.files import snapshot
from tests.reliability.cases import CASES, Case, Ctx

_IN_PROCESS = [c for c in CASES if not c.mem]


def make_ctx(
    tmp_path: Path,
    onnx_model,
    checkpoint_dir: Path,
    wsol_set: Path,
    eval_maps: Path,  # type: ignore[no-untyped-def]
    photo: Path,
) -> Ctx:
    return Ctx(
        dir=tmp_path, onnx=onnx_model("fcam", "onnx"), ckpt=checkpoint_dir, data=wsol_set, maps=eval_maps, photo=photo
    )


def check_outcome(
    c: Case, ctx: Ctx, argv: list[str], rc: int, err: str, before: dict[str, tuple[int, int, int, str]]
) -> None:
    """The assertions every case shares (also used for the subprocess results of the memory cases)."""
    assert "Traceback" not in err, f"{c.id}: traceback\n{err[-2000:]}"
    if c.expect == "error":
        assert rc == 2, f"{c.id}: exit {rc}, expected 2\n{err[-2000:]}"
        lines = [ln for ln in err.splitlines() if re.match(rf"fcam {re.escape(argv[0])}[\w -]*: error: ", ln)]
        assert lines, f"{c.id}: no 'fcam {argv[0]}: error:' line in\n{err[-2000:]}"
        assert re.search(c.match, lines[-1]), f"{c.id}: {c.match!r} not in {lines[-1]!r}"
    else:
        assert rc == 0, f"{c.id}: exit {rc}\n{err[-2000:]}"
        assert c.check is not None
        c.check(ctx)
    after = snapshot(ctx.dir, *ctx.shared())
    changed = [p for p, st in before.items() if after.get(p) != st]
    assert not changed, f"{c.id}: existing files changed or removed: {changed[:5]}"
    leftovers = [p for p in after if p.endswith(".tmp") or "/.tmp-" in p or ".tmp-" in Path(p).name]
    assert not leftovers, f"{c.id}: temporary files left: {leftovers[:5]}"


@pytest.mark.parametrize("c", _IN_PROCESS, ids=[c.id for c in _IN_PROCESS])
def test_bad_input(
    c: Case,
    tmp_path: Path,
    onnx_model,
    checkpoint_dir: Path,
    wsol_set: Path,  # type: ignore[no-untyped-def]
    eval_maps: Path,
    photo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_ctx(tmp_path, onnx_model, checkpoint_dir, wsol_set, eval_maps, photo)
    argv = c.build(ctx)
    capsys.readouterr()
    before = snapshot(ctx.dir, *ctx.shared())
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects the arguments: exit 2 with 'fcam <cmd>: error:'
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    check_outcome(c, ctx, argv, rc, err, before)


def test_the_table_covers_every_defect_of_the_issue() -> None:
    listed = {c.issue for c in CASES if c.issue}
    assert {"1", "2", "3", "4", "5", "6"} <= listed, listed
    assert len(CASES) == len({c.id for c in CASES}), "case ids must be unique"


def test_train_help_shows_a_torchrun_command_that_runs() -> None:
    """`fcam train --help` documents DDP with `torchrun ... -m MODULE train ...`: MODULE must be runnable with -m
    (the package, not the `fcam_deploy.cli` package, which Python refuses to execute)."""
    import subprocess
    import sys

    from fcam_deploy.cli import build_parser

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "train" in a.choices)
    text = sub.choices["train"].format_help()
    m = re.search(r"torchrun .*?-m (\S+) train fcam", text)
    assert m, text
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", m.group(1), "train", "fcam", "--help"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "--classifier" in proc.stdout, proc.stderr[-2000:]
