"""Host software for winnow: Winograd math, golden model, quantisation, packing and tools."""
