# The README's commands. Each one sets itself up: a virtual environment under
# .venv with the CPU build of torch, then the package built in place.
#   make demo    the main job: synthetic data -> train -> analyze -> evaluate (runs/demo/)
#   make test    build and run the whole test suite (what CI runs)
#   make bench   operator benchmarks: medians and speed-up ratios
#   make wheel   build a wheel into dist/

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
DEPS_STAMP := $(VENV)/.deps-$(TORCH_VERSION)
# Two cores on the reference machines; ninja would otherwise start more jobs
# than fit in memory with the torch headers.
export MAX_JOBS ?= 2

.PHONY: venv install demo test bench wheel clean

$(DEPS_STAMP): Makefile pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# diskcache (below) is the book's crop cache: the training-samples
	# benchmark's reference path reads its crops from one.
	# torch first, pinned: an unpinned torch pulled in by another package
	# would resolve to a multi-GB CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet --disable-pip-version-check \
	    numpy SimpleITK tqdm tensorboard scipy matplotlib fastapi uvicorn python-multipart httpx pybind11 ninja setuptools wheel pytest pytest-benchmark expecttest diskcache
	touch $@

venv: $(DEPS_STAMP)

install: venv
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .

demo: install
	$(VENV)/bin/torchlite demo

test: install
	$(PY) -m pytest -q --benchmark-disable

bench: install
	$(VENV)/bin/torchlite bench --quick --json runs/bench.json

wheel: venv
	$(PY) -m pip wheel --no-build-isolation --no-deps -w dist .

clean:
	rm -rf build dist *.egg-info torchlite/_C*.so

# --- C++ (issue 6): the operator library and cpp_app/ against the LibTorch
# inside the installed torch, configured and built incrementally in build/cpp.
#   make cpp    build/torchlite-mhd-info and build/torchlite-app
#   make fuzz   the .mhd reader's fuzz target, run for FUZZ_SECONDS
CPP_BUILD    := build/cpp
FUZZ_SECONDS ?= 60

.PHONY: cpp fuzz

cpp: venv
	cmake -S . -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release \
	    -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build $(CPP_BUILD) -j $(MAX_JOBS)
	ln -sf cpp/torchlite-mhd-info build/torchlite-mhd-info
	ln -sf cpp/torchlite-app build/torchlite-app

# libFuzzer when the compiler has it (clang), else the target's own random
# mutation loop (gcc); both under AddressSanitizer and UBSan. A crash leaves
# its input in $(CPP_BUILD)/crash-*.
fuzz: cpp
	cmake --build $(CPP_BUILD) --target fuzz_mhd_header -j $(MAX_JOBS)
	mkdir -p $(CPP_BUILD)/fuzz_corpus
	$(CPP_BUILD)/fuzz_mhd_header -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(CPP_BUILD)/ \
	    $(CPP_BUILD)/fuzz_corpus $(CPP_BUILD)/fuzz_seeds
