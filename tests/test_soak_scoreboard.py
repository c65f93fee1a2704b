"""The soak's scoreboard (:mod:`verif.soak`): every kind of stream fault is caught and named."""

from __future__ import annotations

import pytest

from verif.soak import FrameScoreboard, classify, stream_beats

FRAME = [(value, 0xFF, int(value == 9)) for value in range(10)]


def counts(found):
    return (found.lost, found.duplicated, found.reordered, found.mismatched)


@pytest.mark.parametrize("received, expected_counts", [
    (FRAME, (0, 0, 0, 0)),
    (FRAME[:3] + FRAME[4:], (1, 0, 0, 0)),                     # a dropped beat
    (FRAME[:3] + FRAME[3:4] + FRAME[3:], (0, 1, 0, 0)),        # a beat taken twice
    (FRAME[:3] + [FRAME[4], FRAME[3]] + FRAME[5:], (0, 0, 1, 0)),   # two beats swapped
    (FRAME[:2] + FRAME[3:8] + FRAME[2:3] + FRAME[8:], (0, 0, 1, 0)),  # a beat arriving late
    (FRAME[:3] + [(99, 0xFF, 0)] + FRAME[4:], (0, 0, 0, 1)),   # a corrupted value
    (FRAME[:3] + [(3, 0x0F, 0)] + FRAME[4:], (0, 0, 0, 1)),    # a corrupted tkeep
    (FRAME + [(77, 0xFF, 1)], (0, 0, 0, 1)),                   # an extra beat nobody sent
    ([], (10, 0, 0, 0)),                                       # nothing arrived
])
def test_classify_names_each_fault(received, expected_counts):
    found = classify(FRAME, received)
    assert counts(found) == expected_counts
    assert found.clean == (expected_counts == (0, 0, 0, 0))
    assert bool(found.first) != found.clean


def test_frame_scoreboard_counts_only_clean_frames():
    board = FrameScoreboard("m_axis_out")
    board.expect(FRAME, values=80)
    for beat in FRAME:
        board.receive(beat)
    assert board.check().clean
    board.expect(FRAME, values=80)
    for beat in FRAME[1:]:
        board.receive(beat)
    assert counts(board.check()) == (1, 0, 0, 0)
    assert (board.beats, board.values, board.frames) == (10, 80, 1)
    assert counts(board.totals) == (1, 0, 0, 0)
    assert board.totals.first.startswith("m_axis_out: expected beats #0")


def test_stream_beats_pads_masks_and_marks_last():
    data, keep = bytes([1, 2, 3, 4, 5, 6]), bytes([1, 1, 1, 1, 1, 0])
    assert stream_beats(data, keep, 4, mask_unkept=True) == [
        (0x04030201, 0xF, 0), (0x0005, 0x1, 1)]
    assert stream_beats(data, keep, 4, mask_unkept=False) == [
        (0x04030201, 0xF, 0), (0x0605, 0x1, 1)]
