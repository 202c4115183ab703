# Two entry points for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline dataset mirror: $GNNBACKDOOR_DATA_MIRROR, else ../shared/datasets if present.
MIRROR ?= $(or $(GNNBACKDOOR_DATA_MIRROR),$(wildcard $(abspath ../shared/datasets)))

.PHONY: setup demo test lint clean-models bench pages

setup: $(VENV)/.installed

# torch is pinned (2.13.0, the CPU build); an unpinned torch pulls the CUDA wheels.
# [distributed] (Ray, for `sweep --executor ray`) is installed too, so `make test` runs the
# Ray tests instead of skipping them: its wheel is 79 MB (240 MB installed, next to about
# 1.35 GB for torch and the rest) and installed in 14 s here.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[service,dev,distributed]"
	touch $@

# The sweep's per-run JSON lines are in runs/demo/records.jsonl; the report tells the story
# (tables, glossary, a plain-language account) and writes the figures into runs/demo/figures/.
# One torch thread: the demo's models are tiny, and a shared machine is not oversubscribed.
demo: setup
	GNNBACKDOOR_DATA_MIRROR=$(MIRROR) $(BIN)/gnnbackdoor sweep experiments/demo.yaml --out runs/demo --threads 1 > /dev/null
	$(BIN)/gnnbackdoor report runs/demo --account --figures

test: setup
	GNNBACKDOOR_DATA_MIRROR=$(MIRROR) $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Every reproduction page from the committed records (no run): each page reads its own
# results/<folder>/records.jsonl (graph_attacks also graphprot's and gcleaner's; graphprot
# and gcleaner also results/defense_baselines once that sweep has records) and its prose from
# docs/reproduction/templates/<page>.md.
PAGES := clean_models link_backdoor link_baselines graph_attacks graphprot graphprot-ablations gcleaner

pages: setup
	@for page in $(PAGES); do \
		out=docs/reproduction/$$(echo $$page | tr - _).md; \
		echo "$$out"; \
		$(BIN)/gnnbackdoor report --page $$page --out $$out || exit 1; \
	done

clean-models: setup
	GNNBACKDOOR_DATA_MIRROR=$(MIRROR) $(BIN)/gnnbackdoor sweep experiments/clean_models.yaml --out results/clean_models --threads 1
	$(BIN)/gnnbackdoor report --page clean_models --out docs/reproduction/clean_models.md

bench: setup
	GNNBACKDOOR_DATA_MIRROR=$(MIRROR) $(BIN)/python bench/foundation_speed.py
