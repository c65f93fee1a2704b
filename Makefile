# winnow — every user command sets itself up: .venv, pip install, simulator check.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.winnow-installed
TRAIN_STAMP := $(VENV)/.winnow-train-installed
# empty SIM: benches prefer Icarus, the demo Verilator (fast_simulator); set it to force one
SIM    ?=
SEED   ?=
WAVES  ?= 0
PYTEST_WORKERS ?= auto
export SIM SEED WAVES

.PHONY: help setup sim test unit verif formal demo bench fpga sweep soak clean

help:
	@echo "make demo    generate, pack and run the example model on the RTL (the main job)"
	@echo "             DEMO_ARGS='--images 20' passes options to python -m verif.demo"
	@echo "make test    every test CI runs (unit + cocotb + synthesis smoke)"
	@echo "make verif   cocotb regression only   (SIM=icarus|verilator WAVES=1 SEED=n)"
	@echo "make formal  formal proofs of the stream rules and transforms -> build/formal/"
	@echo "             FORMAL_ARGS='lane_queue' runs some (python -m verif.formal --list)"
	@echo "make bench   cycle benchmarks -> build/bench/results.json (array), system.json (whole"
	@echo "             accelerator); BENCH_ARGS / SYSTEM_BENCH_ARGS pass options to each"
	@echo "make soak    1,000,000 checked transfers through the accelerator -> build/soak/soak.json"
	@echo "             SOAK_ARGS='--transfers 50000 --seed 7' passes options to python -m verif.soak"
	@echo "make fpga    YoWASP synthesis, place and route, bitstream -> build/fpga/report.json"
	@echo "make sweep   FPGA design-space sweep -> build/fpga/sweep.json, docs/img/fpga_pareto.png"
	@echo "make clean   remove build/ (keeps .venv)"

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,fpga]'
	@touch $@

# The train extra pins torch==2.13.0, a local CPU wheel on the reference machine (about 30 s).
$(TRAIN_STAMP): $(STAMP)
	$(VPY) -m pip install -q -e '.[test,fpga,train]'
	@touch $@

setup: $(STAMP)

sim: $(STAMP)
	@$(VPY) -m verif.simulator

test: sim $(TRAIN_STAMP)
	$(VPY) -m pytest -n $(PYTEST_WORKERS) -q

unit: $(STAMP)
	$(VPY) -m pytest -n $(PYTEST_WORKERS) -q tests

verif: sim
	@mkdir -p build/verif
	$(VPY) -m pytest -n $(PYTEST_WORKERS) -q verif --junitxml=build/verif/junit.xml

# FORMAL_ARGS='--list', or proof names: python -m verif.formal --help
formal: $(STAMP)
	$(VPY) -m verif.formal $(FORMAL_ARGS)

demo: sim
	$(VPY) -m verif.demo $(DEMO_ARGS)

# The default grids fit 20 minutes on 2 cores: the array bench on conv64 (16 tiles, w 0.1/0.35,
# a 0.3/1.0, both prunings), its sim-speed run (the whole accelerator on 20 digits on
# Verilator -> build/bench/sim_speed.json: build seconds and cycles/s), and the system bench's
# full grid (conv64/128/256 at full size, both prunings, w 0.1/0.2/0.35, a 0.3/0.5/1.0: 54
# cases, about 5.5 minutes). Widen the array bench with BENCH_ARGS= (its full grid, over an
# hour); SYSTEM_BENCH_ARGS= (empty) runs the system bench's two conv64 cases only;
# --no-sim-speed in BENCH_ARGS skips the sim-speed run. Verilator's options:
# docs/verification.md, "Simulation speed".
BENCH_ARGS ?= --quick --tiles 16 --matched
SYSTEM_BENCH_ARGS ?= --full
bench: sim
	$(VPY) -m verif.bench $(BENCH_ARGS)
	$(VPY) -m verif.bench_system $(SYSTEM_BENCH_ARGS)

# Random short layers under random stalls on every port, every beat against the golden model;
# about 10 minutes plus the Verilator build (docs/verification.md, "Soak").
SOAK_ARGS ?=
soak: sim
	$(VPY) -m verif.soak $(SOAK_ARGS)

# FPGA_ARGS='--lanes 1 --c-max 16' etc.: python -m fpga.synth --help
fpga: $(STAMP)
	$(VPY) -m fpga.synth $(FPGA_ARGS)

# SWEEP_ARGS='--jobs 2 --set wmem_depth=256' etc.: python -m fpga.sweep --help
sweep: $(STAMP)
	$(VPY) -m fpga.sweep $(SWEEP_ARGS)

clean:
	rm -rf build sim_build
