"""pytest runner of the short soak: :mod:`verif.soak` on the whole accelerator in the suite.

``make soak`` runs the full 1,000,000 transfers; this runs :data:`SHORT_TRANSFERS` with the
run's seed, in the build directory of ``make soak`` (the default configuration), so a local
``make soak`` after ``make test`` reuses the Verilator build. The bench's own
``test_scoreboard_catches_a_dropped_beat`` runs first in the same simulation and must see the
hidden beat.
"""

from __future__ import annotations

import pytest

from verif.soak import PORTS, run_soak
from verif.stalls import session_seed

#: Transfers of the short soak: about 20 s of simulation on Verilator.
SHORT_TRANSFERS = 20_000


@pytest.mark.cocotb
def test_short_soak(tmp_path):
    report = run_soak(SHORT_TRANSFERS, session_seed(), tmp_path / "soak.json")
    assert report["passed"], report.get("failure")
    assert report["transfers"]["total"] >= SHORT_TRANSFERS
    assert all(report["transfers"][port] > 0 for port in PORTS), report["transfers"]
    assert report["discrepancies"] == {"lost": 0, "duplicated": 0, "reordered": 0,
                                       "mismatched": 0}
    assert report["runs"] >= report["passes"] >= report["layers"] > 0
    # every layer's last run carried the next layer's first record (hw.weight_ring)
    assert report["loads_during_runs"] >= report["layers"]
