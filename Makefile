# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
STORE   ?= featstore-store

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned: 2.13.0 resolves to a local CPU wheel here, anything looser
# pulls a multi-GB CUDA build. laserembeddings declares torch<2 and numpy<2 but
# runs on current ones, so it goes in with --no-deps; its real needs
# (subword-nmt, sacremoses, transliterate) come from pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,bench,ray,openvino]"
	$(BIN)/pip install -q --no-deps laserembeddings==1.1.2
	touch $(STAMP)

install: $(STAMP)

# the main job on the bundled encoder: featurize, fit a head, predict two new texts, chart
demo: $(STAMP)
	$(BIN)/featurize --store $(STORE) data/sample.csv
	$(BIN)/fit-head --store $(STORE) --pool mean-max --out demo --overwrite
	$(BIN)/featstore predict --store $(STORE) --head demo --top-k 2 \
		--text "my card is gone" --text "please send my money back"
	mkdir -p out
	$(BIN)/featstore probe-layers --store $(STORE) --charts out --overwrite

# the linter first: a fresh clone's `make test` is the CI's check, lint included
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check featstore tests bench

bench: $(STAMP)
	$(BIN)/python bench/featurize_vs_st.py

clean:
	rm -rf $(STORE) out .pytest_cache
