"""FPGA synthesis and place-and-route flows (YoWASP Yosys and nextpnr)."""
