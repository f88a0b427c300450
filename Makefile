# Two commands for everyone: `make run` (the course's main job) and `make test`.
# Both create .venv on first use and install the pinned dependencies.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# numpy's BLAS at one thread in everything started from here (the milestone, JupyterLab and its kernels,
# the tests): on a busy or shared machine two BLAS threads wait on each other and a cell's cost multiplies.
# Set OMP_NUM_THREADS (and OPENBLAS_/MKL_NUM_THREADS) or TINYTORCH_BLAS_THREADS to ask for more.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: sandbox browser hub-deps hub setup run selfcheck test release export kit lab lab-instructor demos voila models gpt lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
	  f"this course needs Python 3.11, found {sys.version.split()[0]} at {sys.executable}: set PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@# jsonschema (via nbformat) imports rfc3987-syntax when it is there, which builds ~35 Lark parsers at
	@# import: 1.2 s of CPU in every process that reads a notebook (nbgrader, tito, the Jupyter server).
	@# No Jupyter schema checks the "iri" format it serves (jsonschema issue #1428): take it out.
	$(BIN)/python -m pip uninstall --quiet -y rfc3987-syntax
	touch $(STAMP)

# The main job. Until Milestone 06 exists: build and release every module,
# export the reference library, autograde the reference solution and the
# untouched release of every module, and print the score table.
# Grading runs student code in a bubblewrap sandbox (tito/sandbox.py). As root on
# Debian/Ubuntu this installs bwrap when it is missing; elsewhere it says what to do.
sandbox:
	@command -v bwrap >/dev/null || [ "$$TITO_NO_SANDBOX" = 1 ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing bubblewrap (the grading sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "grading needs bwrap (bubblewrap): apt-get install bubblewrap, dnf install bubblewrap;" \
	         "or TITO_NO_SANDBOX=1 make ... to grade without a sandbox (student code runs with your rights)"; \
	    exit 1; \
	  fi; }

# The browser tests (tests/test_lab.py) drive JupyterLab in Chromium with Playwright, using
# the system's Chromium (Playwright's own download host is not always reachable). As root on
# Debian/Ubuntu this installs it when it is missing; elsewhere it says in one line how to get
# it, and `make test` skips the browser tests (CI sets TINYTORCH_BROWSER_TESTS=required: never skipped).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
browser:
	@[ -n "$(CHROMIUM)" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (the browser tests' browser, about a minute)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else \
	    echo "no Chromium: the browser tests will be skipped; sudo make browser (or apt-get install chromium) runs them"; \
	  fi; }

# JupyterHub's proxy (configurable-http-proxy, pinned in hub/package-lock.json) goes into hub/node_modules
# (npm ci, never a global install); as root on Debian/Ubuntu this installs node and npm when missing.
hub-deps:
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing nodejs and npm (JupyterHub's proxy)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else \
	    echo "no npm: tests/test_hub.py will be skipped; sudo make hub-deps (or apt-get install nodejs npm) runs it"; \
	  fi; }
	@if command -v npm >/dev/null && [ ! -x hub/node_modules/.bin/configurable-http-proxy ]; then \
	  cd hub && npm ci --no-audit --no-fund --loglevel=error; fi

# A class on this host (hub/README.md): as root, creates the OS users it is told to (students and the
# instructor, random passwords printed once), the users' environment, the student kit, the exchange and
# the instructor's course directory (a clone of this repository in their home), then runs JupyterHub on
# 127.0.0.1:$(HUB_PORT) until Ctrl+C.   make hub USERS="alice bob" INSTRUCTOR=prof
HUB_PORT ?= 8000
hub: $(STAMP) sandbox hub-deps
	@[ "$$(id -u)" = 0 ] || { echo "make hub runs as root: it creates OS users and starts each user's server as that user"; exit 1; }
	@[ -n "$(USERS)" ] && [ -n "$(INSTRUCTOR)" ] || { echo 'usage: make hub USERS="alice bob" INSTRUCTOR=prof [HUB_PORT=8000] [MODULES=01-06]'; exit 1; }
	$(BIN)/python hub/hubctl.py --users "$(USERS)" --instructor "$(INSTRUCTOR)" --port $(HUB_PORT) $(if $(MODULES),--modules $(MODULES))

# Students: create .venv once, then follow the printed next steps.
setup: $(STAMP)
	@echo
	@echo "Ready. Next:"
	@echo "  source .venv/bin/activate      # puts tito and jupyter on your PATH (once per terminal)"
	@echo "  tito module start 01           # copies release/01_tensor/ into workspace/01_tensor/"
	@echo "  make lab                       # JupyterLab; open workspace/01_tensor/01_tensor.ipynb"

# The course's main job: Milestone 06 on the library in tinytorch_lib/ (the course reference on a fresh
# checkout, your exports once you have made them) and the shipped weights. Tables as JSON and plots as
# PNG go to results/06_2018_mlperf/.
MILESTONE := notebooks/06_2018_mlperf
run: $(STAMP)
	cd $(MILESTONE) && ../../$(BIN)/python 01_optimization_olympics.py
	cd $(MILESTONE) && ../../$(BIN)/python 02_generation_speedup.py
	@echo "Tables and plots: results/06_2018_mlperf/ (table2_static.json, table3_generation.json, *.png)"

# Every module: build and release, export the reference library, autograde the reference solution
# (full marks) and the untouched release (0 on every graded cell), and print the score table.
selfcheck: $(STAMP) sandbox
	$(BIN)/tito release
	$(BIN)/tito export --reference
	$(BIN)/tito selfcheck

# Tests run in parallel (pytest-xdist), one worker more than cores: most of a grading or browser test
# is spent waiting on a kernel, a sandbox or Chromium (on 2 cores, 3 workers: 17 min where 2 took 19).
# TEST_JOBS=1 runs them in one process. Longest first, one unit at a time per worker, tests sharing a
# module-scoped fixture as one unit (tests/conftest.py): --dist loadgroup --no-loadscope-reorder.
TEST_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP) sandbox browser hub-deps
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder --durations=30

release: $(STAMP)
	$(BIN)/tito release

export: $(STAMP)
	$(BIN)/tito export --reference

# The student kit (tito/kit.py): a git repository of its own with the release notebooks, a stub library,
# data, the student tito, no solution. `make kit DEST=../tinytorch-kit` (every module), MODULES=01-06 for
# part of the course, SOLUTIONS_THROUGH=05 to release solutions; on an existing kit: one more commit.
kit: $(STAMP)
	@[ -n "$(DEST)" ] || { echo "usage: make kit DEST=/path/to/kit [MODULES=01-06] [SOLUTIONS_THROUGH=NN]"; exit 1; }
	$(BIN)/tito kit "$(DEST)" $(if $(MODULES),--modules $(MODULES)) $(if $(SOLUTIONS_THROUGH),--solutions-through $(SOLUTIONS_THROUGH))

# JupyterLab holds this terminal: run tito in a second one, or in JupyterLab's own
# terminal. As root (Docker, Codespaces) Jupyter refuses to start without --allow-root.
# `make lab` is the student setup (lab/student: no Create Assignment, no Formgrader);
# `make lab-instructor` builds every source/NN/NN.ipynb first and enables all of nbgrader.
# .venv/bin goes first on PATH: Formgrader runs `alembic` (its gradebook migrations) from PATH.
LAB_ARGS = $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	@echo "JupyterLab (student setup) keeps this terminal until you stop it (Ctrl+C twice)."
	@echo "Run tito in a second terminal, or in JupyterLab (File > New > Terminal): source .venv/bin/activate"
	PATH="$(CURDIR)/$(BIN):$$PATH" JUPYTER_CONFIG_PATH=$(CURDIR)/lab/student $(BIN)/jupyter lab $(LAB_ARGS)

lab-instructor: $(STAMP)
	$(BIN)/tito build
	@echo "JupyterLab (instructor setup: Create Assignment, Formgrader) keeps this terminal until you stop it."
	PATH="$(CURDIR)/$(BIN):$$PATH" JUPYTER_CONFIG_PATH=$(CURDIR)/lab/instructor $(BIN)/jupyter lab $(LAB_ARGS)

# Lecture demos (notebooks/demos/, jupytext .py). `make demos` before a lecture, on the machine you present
# from: writes the .ipynb next to each .py (Voila serves notebooks only), measures what is slow to measure
# (timing tables, accuracy curves: a few minutes) into notebooks/demos/stored/ with where and when, and
# stores each demo's first figure. DEMO=kvcache measures one. `make voila` serves the demos as apps (kernels
# preheated, template notebooks/demos/voila/templates/demo: a page shows its stored figure at once;
# notebooks/demos/voila.json).
DEMOS := quantization pruning kvcache vectorization
demos: $(STAMP)
	$(BIN)/jupytext --to notebook $(DEMOS:%=notebooks/demos/%.py)
	cd notebooks/demos && ../../$(BIN)/python demo_measure.py $(DEMO)

voila: $(STAMP)
	$(BIN)/jupytext --to notebook $(DEMOS:%=notebooks/demos/%.py)
	cd notebooks/demos && JUPYTER_PATH=$(CURDIR)/notebooks/demos ../../$(BIN)/voila .

# Train the digit MLP and CNN (5 seeds each, a minute or two), print the table,
# and write the seed-0 models to data/mlp_digits.npz and data/cnn_digits.npz.
models: $(STAMP)
	$(BIN)/python -m benchmarks.train_digits --write

# The course's character-level GPT (Module 13): trains on data/corpus.txt with the
# course's own autograd and Adam (about 20-30 minutes on one core) and writes
# data/gpt_corpus.npz; prints validation loss vs the unigram baseline and a sample.
gpt: $(STAMP)
	$(BIN)/python -m benchmarks.train_gpt

# Re-pin every package after changing the top-level pins in pyproject.toml.
lock: $(STAMP)
	(printf '# Every installed package, pinned (pip freeze of a working .venv on Python 3.11).\n'; \
	 printf '# Used as `pip install -c constraints.txt -e .`; regenerate with `make lock`.\n'; \
	 $(BIN)/python -m pip freeze --exclude-editable) > constraints.txt

clean:
	rm -rf $(VENV) autograded/*/ submitted feedback gradebook.db source/*/*.ipynb notebooks/demos/*.ipynb exchange
