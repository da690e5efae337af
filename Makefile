UV := ./scripts/uv
PORT ?= 8080

.PHONY: install run test lint format bench bench-all fallback

install:
	@$(UV) sync --frozen --quiet

run: install
	@$(UV) run --frozen python cli.py serve --port $(PORT)

test: install
	@./scripts/need redis-server redis-server
	$(UV) run --frozen pytest -q

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy .

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install
	@./scripts/need redis-server redis-server
	@./scripts/need wrk wrk
	$(UV) run --frozen python -m bench.assemble

# The other benchmarks: webhook → visible latency, event ingest, slot decisions vs growthbook.
bench-all: bench
	$(UV) run --frozen python -m bench.webhook_latency
	$(UV) run --frozen python -m bench.ingest
	$(UV) run --frozen python -m bench.decisions

fallback: install
	$(UV) run --frozen python cli.py fallback export
