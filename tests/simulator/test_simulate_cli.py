"""`edge-agent simulate` refuses bad input with one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import main
from trainer.demo.broker import free_port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs --bundle"),
        (["--bundle", "{bundle}", "--devices", "0"], "devices"),
        (["--bundle", "{bundle}", "--inject", "spike,meteor"], "meteor"),
        (["--bundle", "{bundle}", "--broker", "http://x"], "mqtt://"),
        (["--bundle", "{bundle}", "--broker", "mqtt://127.0.0.1:{port}", "--duration", "1"], "cannot reach"),
        (["--bundle", "{missing}"], "bundle"),
        (["--replay", "{missing}"], "missing"),
    ],
)
def test_bad_simulate_input_is_one_line_and_exit_2(
    pump_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    filled = [a.format(bundle=pump_bundle, missing=tmp_path / "missing", port=free_port()) for a in args]
    assert main(["simulate", *filled]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
