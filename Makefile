# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
MIN_STAMP := $(MIN_VENV)/.installed
# `make test-min`: the suite against the oldest versions setup.py admits (constraints/minimum.txt), with the
# same ROS wheels and the same torch. Left out, by marker (test/conftest.py lists them): `slow`, tests of processes,
# timing and transport rather than of library versions, which are also the slowest (soak, fault injection,
# multi-process nodes, the study, the demo), the training runs, the two-process DDP test and the export matrix of
# every sharing depth (torch is not at a floor; the exporter at the onnx/onnxscript floors is tested by
# test_inference_export.py); and `ros`, every test of a live ROS graph (the same ros-* wheels in both venvs; the
# deploy graph they run is tested at the floors by test_inference_deploy_graph.py).
MIN_MARKERS := not slow and not ros

# Every pytest run is two phases: the suite less the `serial` tests on two pytest-xdist workers (test/conftest.py
# keeps each group of modules on one worker: every live ROS graph, the shared export cache), then the `serial` tests
# alone (their assertions measure wall time). Both print their 25 slowest steps.
PARALLEL := -n 2 --durations=25
SERIAL := --durations=25

JAZZY_VENV ?= .venv-jazzy
JAZZY_PY := $(JAZZY_VENV)/bin/python
JAZZY_STAMP := $(JAZZY_VENV)/.installed
# `make test-jazzy`: on ROS 2 Jazzy's wheels (constraints/jazzy.txt: rclpy 7.1, Fast DDS 2.14) with the rest of
# requirements.txt as pinned, the live-ROS-graph tests whose outcome depends on the distribution: rclpy's node,
# lifecycle, parameter, QoS, executor and raw-publisher API (node, pipelined stages, cameras, the shipped
# parameter files and the rclpy contract), and Fast DDS's transports and profile variable between processes
# (multiprocess, fastdds_profile). Left out: live-graph tests of no ROS behaviour of their own (the bad-input
# corpus: the codec; bag replay: the rosbags side), and soak, fault injection and the demo (time, not distribution).
# The message definitions the node uses are the same in Jazzy and Kilted (same type hashes; see README).
JAZZY_TESTS := test/test_ros_node.py test/test_ros_pipelined.py test/test_ros_cameras.py test/test_ros_multiprocess.py \
	test/test_ros_fastdds_profile.py test/test_ros_distributions.py test/test_ros_parameter_files.py

.PHONY: demo test test-fast test-min test-jazzy venv clean lint gpu-check-deps

venv: $(STAMP)

$(STAMP): requirements.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q test $(PARALLEL) -m "not serial"
	$(PY) -m pytest -q test $(SERIAL) -m "serial"

# the inner loop: everything but the tests marked slow (see test/conftest.py)
test-fast: $(STAMP)
	$(PY) -m pytest -q test $(PARALLEL) -m "not slow and not serial"
	$(PY) -m pytest -q test $(SERIAL) -m "not slow and serial"

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
	$(MIN_PY) -m pytest -q test $(PARALLEL) -m "$(MIN_MARKERS) and not serial"
	$(MIN_PY) -m pytest -q test $(SERIAL) -m "$(MIN_MARKERS) and serial"

$(JAZZY_STAMP): constraints/jazzy.txt requirements.txt setup.py setup.cfg
	rm -rf $(JAZZY_VENV)
	$(PYTHON) -m venv $(JAZZY_VENV)
	$(JAZZY_PY) -m pip install -q --upgrade pip
	grep -v '^ros-' requirements.txt > $(JAZZY_VENV)/requirements-without-ros.txt
	$(JAZZY_PY) -m pip install -q -r $(JAZZY_VENV)/requirements-without-ros.txt -r constraints/jazzy.txt
	$(JAZZY_PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(JAZZY_STAMP)

test-jazzy: $(JAZZY_STAMP)
	@$(JAZZY_PY) -c "import importlib.metadata as m; print('ROS wheels:', ' '.join(n + '==' + m.version(n) for n in ('ros-rclpy', 'ros-rmw-fastrtps-cpp', 'ros-fastrtps')))"
	$(JAZZY_PY) -m pytest -q $(JAZZY_TESTS) $(SERIAL)

# `make gpu-check-deps`: .gpu_deps/, the wheels benchmarks/gpu_check.py needs on a bare CUDA machine (pydantic,
# PyYAML, onnxconverter-common) for CPython 3.10-3.13 on x86_64 and aarch64, downloaded with pip (tools/gpu_deps.py);
# `make test` never downloads them (test/test_gpu_check.py skips its bundle tests without them)
GPU_DEPS := .gpu_deps/MANIFEST.json

gpu-check-deps: $(GPU_DEPS)

$(GPU_DEPS): requirements.txt tools/gpu_deps.py
	$(PYTHON) tools/gpu_deps.py --out .gpu_deps

demo: $(STAMP)
	$(PY) -m mtl_perception.demo

clean:
	rm -rf $(VENV) $(MIN_VENV) $(JAZZY_VENV) build *.egg-info src/*.egg-info demo_output
