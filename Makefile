# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
MIN_STAMP := $(MIN_VENV)/.installed
# `make test-min`: the suite against the oldest versions setup.py admits (constraints/minimum.txt), with the
# same ROS wheels. Left out: tests of processes, timing and transport rather than of library versions, which
# are also the slowest (soak, fault injection, Fast DDS delivery, multi-process, the study, the demo) and the
# three longest training runs (convergence, kill-and-resume, two-process DDP: torch is not at a floor), and the
# tests of a live ROS graph (node, pipelining, cameras, replay: the same ros-* wheels in both venvs; the deploy
# graph they run is tested at the floors by test_inference_deploy_graph.py).
MIN_SKIP := --ignore=test/test_reliability_soak.py --ignore=test/test_reliability_faults.py \
	--ignore=test/test_reliability_delivery.py --ignore=test/test_ros_multiprocess.py \
	--ignore=test/test_ros_node.py --ignore=test/test_ros_pipelined.py --ignore=test/test_ros_cameras.py \
	--ignore=test/test_bags_replay.py \
	--ignore=test/test_study.py --ignore=test/test_demo.py \
	--deselect=test/test_training_run.py::test_short_training_reduces_loss_and_beats_trivial_baselines \
	--deselect=test/test_training_run.py::test_killed_training_resumes_from_its_last_checkpoint \
	--deselect=test/test_training_run.py::test_torchrun_two_processes_keep_identical_weights

.PHONY: demo test test-fast test-min venv clean lint

venv: $(STAMP)

$(STAMP): requirements.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q test

# the inner loop: everything but the tests marked slow (see test/conftest.py)
test-fast: $(STAMP)
	$(PY) -m pytest -q test -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

$(MIN_STAMP): constraints/minimum.txt requirements.txt setup.py setup.cfg
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_PY) -m pip install -q --upgrade pip
	grep '^ros-' requirements.txt > $(MIN_VENV)/ros-wheels.txt
	$(MIN_PY) -m pip install -q -c constraints/minimum.txt -r $(MIN_VENV)/ros-wheels.txt -e '.[test]'
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	@$(MIN_PY) -c "import importlib.metadata as m; names = [l.split('==')[0] for l in open('constraints/minimum.txt') if l[:1].isalnum()]; print('minimum versions:', ' '.join(n + '==' + m.version(n) for n in names))"
	$(MIN_PY) -m pytest -q test $(MIN_SKIP)

demo: $(STAMP)
	$(PY) -m mtl_perception.demo

clean:
	rm -rf $(VENV) $(MIN_VENV) build *.egg-info src/*.egg-info demo_output
