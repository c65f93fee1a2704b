"""Every formal proof of :mod:`verif.formal` passes, and every deliberately broken block fails.

Each proof runs SymbiYosys (yowasp-sby, smtbmc, Boolector or the Yices its Proof names) in
``build/formal/<name>/``; the file takes about eight minutes on one core
(docs/verification.md, "Formal proofs"). Proofs marked
``slow`` (minutes each) run in ``make formal`` only.
"""

from __future__ import annotations

import pytest

from verif.formal.__main__ import main
from verif.formal.mutants import FAULTS, MUTANTS
from verif.formal.proofs import PROOFS
from verif.formal.runner import run_proof

pytestmark = pytest.mark.slow


#: The proofs this suite runs: all but the slow ones.
QUICK = tuple(proof for proof in PROOFS if not proof.slow)


@pytest.mark.parametrize("proof", QUICK, ids=[proof.name for proof in QUICK])
def test_proof_passes(proof):
    result = run_proof(proof)
    assert result.status == "PASS", (
        f"formal proof {proof.name} ({proof.block}): {result.status} at depth {proof.depth}: "
        f"{'; '.join(result.failures) or 'no failed assertion named'}; log {result.log}")


@pytest.mark.parametrize("proof", MUTANTS, ids=[proof.name for proof in MUTANTS])
def test_broken_block_fails(proof):
    """Each broken StreamBuffer, LineBuffer, OutputReorder and WeightLoader fails its proof,
    on (one of) the properties its fault breaks."""
    result = run_proof(proof)
    expected = FAULTS[proof.name.removeprefix("mutant_")]
    expected = (expected,) if isinstance(expected, str) else expected
    assert result.status == "FAIL", f"{proof.name} was not caught: {result.status}"
    assert any(message in failure for message in expected for failure in result.failures), (
        f"{proof.name} failed, but not on any of {expected}: {result.failures}")


def test_runner_reports_failure(capsys):
    assert main([MUTANTS[0].name]) == 1
    out = capsys.readouterr().out
    assert f"{MUTANTS[0].name}" in out and "FAIL" in out and "0 of 1 passed" in out


def test_proof_runs_on_its_solver(tmp_path):
    """A proof that names Yices gets ``smtbmc yices`` in its .sby file, the others Boolector."""
    from verif.formal.runner import write_proof
    for name, solver in (("output_transform_m4_equivalence_stage2_row2_col3", "yices"),
                         ("stream_buffer", "boolector")):
        proof = next(p for p in PROOFS if p.name == name)
        assert proof.solver == solver
        sby = write_proof(proof, tmp_path / name).read_text()
        assert f"[engines]\nsmtbmc {solver}\n" in sby, sby


def test_runner_refuses_unknown_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no_such_proof"])
    assert exit_info.value.code == 2
    assert "unknown proof no_such_proof" in capsys.readouterr().err


def test_timeout_leaves_no_solver_running(tmp_path):
    """A proof stopped by the timeout ends sby's engines too (each in a process group of its
    own): no process is left working in the proof's directory."""
    import os
    from pathlib import Path
    slow = next(p for p in PROOFS if p.name == "sparse_array_deep")
    result = run_proof(slow, tmp_path / slow.name, timeout=8)
    assert result.status == "ERROR" and result.failures == ["timed out after 8 s"]
    left = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)).is_relative_to(tmp_path):
                left.append(cwd.parent.name)
        except OSError:
            continue                        # ended, or not ours to read
    assert left == [], f"processes still running in {tmp_path}: {left}"
