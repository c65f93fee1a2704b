"""``python -m verif.formal [--list] [NAME ...]``: run the formal proofs, print a summary.

Without names it runs every proof of :data:`verif.formal.proofs.PROOFS`; the deliberately
broken blocks of :data:`verif.formal.mutants.MUTANTS` run only when named (each must FAIL).
Each proof writes ``build/formal/<name>/``. Exit status 0 when every proof run passed, 1
when one failed or did not finish, 2 when the tools are missing or a name is unknown.
"""

from __future__ import annotations

import argparse
import sys

from verif.formal.mutants import MUTANTS
from verif.formal.proofs import PROOFS
from verif.formal.runner import (FORMAL_DIR, SOLVER, SOLVERS, FormalSetupError, check_tools,
                                 run_proof)


def main(argv: list[str] | None = None) -> int:
    known = {proof.name: proof for proof in PROOFS + MUTANTS}
    parser = argparse.ArgumentParser(
        prog="python -m verif.formal",
        description="Prove the stream rules, item conservation and the transform units' "
                    f"equivalence with SymbiYosys (smtbmc, {SOLVER} unless a proof names "
                    f"another of {', '.join(SOLVERS)}). Writes "
                    f"{FORMAL_DIR}/<name>/; exit status 1 if a proof fails.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="proofs to run (default: all but the mutant_* ones, which are "
                             "broken on purpose and must fail)")
    parser.add_argument("--list", action="store_true", help="list the proofs and exit")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds allowed per proof (default 600)")
    args = parser.parse_args(argv)

    if args.list:
        for proof in PROOFS + MUTANTS:
            slow = " [slow: make formal only, not in verif/test_formal.py]" if proof.slow else ""
            solver = f" [solver: {proof.solver}]" if proof.solver != SOLVER else ""
            print(f"{proof.name:32} {proof.mode:5} depth {proof.depth:3}  {proof.block}: "
                  f"{proof.summary}{slow}{solver}")
        return 0
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown proof {', '.join(unknown)}; `--list` shows them")
    chosen = [known[name] for name in args.names] if args.names else list(PROOFS)
    try:
        check_tools(tuple(dict.fromkeys(proof.solver for proof in chosen)))
    except FormalSetupError as error:
        print(error, file=sys.stderr)
        return 2

    results = []
    for index, proof in enumerate(chosen, 1):
        print(f"[{index}/{len(chosen)}] {proof.name} ({proof.mode}, depth {proof.depth}) ...",
              end=" ", flush=True)
        result = run_proof(proof, timeout=args.timeout)
        results.append(result)
        print(f"{result.status} in {result.seconds:.1f} s", flush=True)
        for failure in result.failures:
            print(f"    {failure}")
        if result.status != "PASS":
            print(f"    log: {result.log}")

    print(f"\n{'proof':32} {'status':6} {'depth':>5} {'seconds':>8}")
    for result in results:
        print(f"{result.name:32} {result.status:6} {result.depth:5} {result.seconds:8.1f}")
    passed = sum(result.status == "PASS" for result in results)
    total = sum(result.seconds for result in results)
    print(f"{passed} of {len(results)} passed in {total:.1f} s")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
