UV := ./scripts/uv

.PHONY: install run test lint format bench bench-all bench-faults bench-scale bench-replicas bench-learning-bandit bench-learning-contextual bench-learning-model fallback check-prod

install:
	@$(UV) sync --frozen --quiet

# The port is BRIDGE_PORT (default 8080); `make run PORT=9000` overrides it for one run.
run: install
	@$(UV) run --frozen python cli.py serve $(if $(PORT),--port $(PORT))

test: install
	@./scripts/need redis-server redis-server
	@./scripts/need chromium chromium
	$(UV) run --frozen pytest -q

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy .
	$(UV) run --frozen lint-imports --no-cache

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install
	@./scripts/need redis-server redis-server
	@./scripts/need wrk wrk
	$(UV) run --frozen python -m bench.assemble

# Assemble under a steady load while a private Redis hangs, is killed and restarts (about 40 s).
bench-faults: install
	@./scripts/need redis-server redis-server
	$(UV) run --frozen python -m bench.faults

# The scale table (issue 14) at 1k and 10k entities; `make bench-scale ARGS=--large` adds 50k and 100k.
bench-scale: install
	@./scripts/need redis-server redis-server
	@./scripts/need wrk wrk
	$(UV) run --frozen python -m bench.scale $(ARGS)

# Three replicas behind a round-robin proxy (issue 14): webhook and kill switch → visible on all,
# assemble req/s through the proxy vs one replica directly (about 2 minutes; ARGS=--cluster).
bench-replicas: install
	@./scripts/need redis-server redis-server
	@./scripts/need wrk wrk
	$(UV) run --frozen python -m bench.replicas $(ARGS)

# Bandit mode (issue 13): a population with known conversion rates through the tracking API and
# assemble, the bandit against the uniform split and the oracle (about 5 minutes).
bench-learning-bandit: install
	@./scripts/need redis-server redis-server
	$(UV) run --frozen python -m bench.bandit_sim $(ARGS)

# Contextual bandit (issue 13): planted per-segment truth through the tracking API and assemble;
# uniform, bandit and contextual runs on the same population against the oracle (about 4 minutes).
bench-learning-contextual: install
	@./scripts/need redis-server redis-server
	$(UV) run --frozen python -m bench.contextual_sim $(ARGS)

# Model-scored variants (issue 13): planted ground truth through the tracking API and assemble,
# then `cli.py train`, insights, and the model's choices per segment (about 3 minutes).
bench-learning-model: install
	@./scripts/need redis-server redis-server
	$(UV) run --frozen python -m bench.model_sim $(ARGS)

# The other benchmarks: webhook → visible latency, event ingest, slot decisions vs growthbook.
bench-all: bench
	$(UV) run --frozen python -m bench.webhook_latency
	$(UV) run --frozen python -m bench.ingest
	$(UV) run --frozen python -m bench.decisions

fallback: install
	$(UV) run --frozen python cli.py fallback export

# A production install (no dev dependencies) in a throwaway environment imports the app and runs the CLI.
check-prod:
	@rm -rf .venv-prod
	UV_PROJECT_ENVIRONMENT=.venv-prod $(UV) sync --frozen --no-dev --quiet
	.venv-prod/bin/python -c "import app, cli; print('production install: app and cli import')"
	.venv-prod/bin/python cli.py --help >/dev/null
	@rm -rf .venv-prod
