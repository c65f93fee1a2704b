"""Amaranth gateware for winnow, the sparse-Winograd CNN accelerator generator."""
