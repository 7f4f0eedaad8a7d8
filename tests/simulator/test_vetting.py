"""Judged streams: chunks with a window above the judge's threshold are drawn again, and nothing else about
the stream changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.backends import Scorer, open_scorer
from edge_agent.bundle import load_bundle
from edge_agent.simulator import stream as stream_module
from edge_agent.simulator.stream import LOOKAHEAD, MAX_BACKTRACKS, DeviceStream, Generator
from edge_agent.simulator.vetting import ChunkJudge
from trainer.windows import slide


@pytest.fixture(scope="module")
def generator(pump_bundle: Path) -> Generator:
    return Generator(load_bundle(pump_bundle))


@pytest.fixture(scope="module")
def judge_parts(pump_bundle: Path) -> tuple[Scorer, int]:
    bundle = load_bundle(pump_bundle)
    return open_scorer(bundle, precision="int8"), bundle.manifest.window_len


def _scores(judge: ChunkJudge, rows: np.ndarray) -> np.ndarray:
    scores: np.ndarray = judge.scorer.score(slide(rows, judge.window_len, 1)).scores
    return scores


def test_a_judge_that_passes_everything_leaves_the_stream_as_drawn(
    generator: Generator, judge_parts: tuple[Scorer, int]
) -> None:
    scorer, window = judge_parts
    judge = ChunkJudge(scorer, float("inf"), window)
    judged = DeviceStream(generator, seed=9, judge=judge).rows(600)
    np.testing.assert_array_equal(judged, DeviceStream(generator, seed=9).rows(600))
    assert judge.counts.chunks > 10 and judge.counts.redrawn == 0 and judge.counts.kept_above == 0


def test_windows_above_the_threshold_are_drawn_again_and_the_stream_stays_continuous(
    generator: Generator, judge_parts: tuple[Scorer, int]
) -> None:
    """A threshold at the raw streams' 95th percentile of window scores: the judged streams cross it far
    less often, and their chunk joins stay as smooth as their insides (a redraw restarts from where the
    accepted chunk before it ended, not from the refused draw)."""
    scorer, window = judge_parts
    probe = ChunkJudge(scorer, float("inf"), window)
    raw = [DeviceStream(generator, seed=seed, variation=0.0).rows(2000) for seed in range(3)]
    threshold = float(np.quantile(np.concatenate([_scores(probe, rows) for rows in raw]), 0.95))
    judge = ChunkJudge(scorer, threshold, window)
    streams = [DeviceStream(generator, seed=seed, variation=0.0, judge=judge) for seed in range(3)]
    judged = [stream.rows(2000) for stream in streams]
    raw_above = np.mean(np.concatenate([_scores(judge, rows) for rows in raw]) > threshold)
    judged_above = np.mean(np.concatenate([_scores(judge, rows) for rows in judged]) > threshold)
    assert judge.counts.redrawn > 0
    assert judged_above < 0.3 * raw_above, (judged_above, raw_above, judge.counts)
    chunk = window - streams[0].overlap
    for rows in judged:
        shapes = (rows - generator.mean) / generator.scale
        steps = np.abs(np.diff(shapes, axis=0)).mean(axis=1)
        at_joins = steps[chunk - 1 :: chunk]
        inside = np.delete(steps, np.arange(chunk - 1, len(steps), chunk))
        assert np.median(at_joins) < 1.5 * np.median(inside), (np.median(at_joins), np.median(inside))


def test_judged_streams_are_reproducible(generator: Generator, judge_parts: tuple[Scorer, int]) -> None:
    scorer, window = judge_parts
    probe = ChunkJudge(scorer, float("inf"), window)
    threshold = float(np.quantile(_scores(probe, DeviceStream(generator, seed=2).rows(1500)), 0.9))

    def judged(seed: int) -> np.ndarray:
        judge = ChunkJudge(scorer, threshold, window)
        return DeviceStream(generator, seed=seed, judge=judge).rows(800)

    np.testing.assert_array_equal(judged(5), judged(5))
    assert not np.allclose(judged(5), judged(6))


def test_a_chunk_that_never_passes_keeps_the_quietest_draw_and_is_counted(
    generator: Generator, judge_parts: tuple[Scorer, int]
) -> None:
    scorer, window = judge_parts
    judge = ChunkJudge(scorer, float("-inf"), window, attempts=3)
    stream = DeviceStream(generator, seed=1, judge=judge)
    rows = stream.rows(500)
    assert np.isfinite(rows).all()
    counts = judge.counts
    published = -(-(500 - (window - stream.overlap)) // (window - stream.overlap))  # after the first chunk
    assert counts.kept_above == counts.chunks == published
    # Every draw of a chunk fails: each chunk publishing lets the judge go back MAX_BACKTRACKS times, and
    # each time in a row reaches one pending chunk further back.
    assert 0 < counts.backtracked <= MAX_BACKTRACKS * (published + 1)
    assert counts.backtracked < counts.dropped <= LOOKAHEAD * counts.backtracked
    # Each round of draws ends in a chunk accepted (published, pending, or dropped later) or in going back.
    rounds = published + LOOKAHEAD + counts.dropped + counts.backtracked
    assert counts.redrawn == 2 * rounds


def test_drawing_ahead_leaves_fewer_chunks_above_than_drawing_each_chunk_alone(
    generator: Generator, judge_parts: tuple[Scorer, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shape filter delays the shapes by half its taps, so a chunk's rows were shaped chunks before: at
    a strict threshold, drawing only the newest chunk again leaves more chunks above it than dropping
    unpublished ones and drawing them again does."""
    scorer, window = judge_parts
    probe = ChunkJudge(scorer, float("inf"), window)
    threshold = float(np.quantile(_scores(probe, DeviceStream(generator, seed=2).rows(3000)), 0.9))

    def kept_above(lookahead: int, backtracks: int) -> int:
        monkeypatch.setattr(stream_module, "LOOKAHEAD", lookahead)
        monkeypatch.setattr(stream_module, "MAX_BACKTRACKS", backtracks)
        judge = ChunkJudge(scorer, threshold, window)
        for seed in range(3):
            DeviceStream(generator, seed=seed, judge=judge).rows(2000)
        return judge.counts.kept_above

    alone, ahead = kept_above(0, 0), kept_above(LOOKAHEAD, MAX_BACKTRACKS)
    assert alone > 0 and ahead < 0.5 * alone, (alone, ahead)
