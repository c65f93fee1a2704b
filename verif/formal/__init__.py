"""Formal proofs of the stream rules and of item conservation, with SymbiYosys from PyPI.

:mod:`verif.formal.rules` states the properties, :mod:`verif.formal.proofs` has one harness
per block and the table :data:`~verif.formal.proofs.PROOFS`, :mod:`verif.formal.mutants`
deliberately broken blocks the proofs must catch, and :mod:`verif.formal.runner` runs
SymbiYosys. ``python -m verif.formal`` (``make formal``) runs them all.
"""
