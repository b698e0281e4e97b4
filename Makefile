# `make demo` and `make test` each create .venv when missing and install the project into it:
# the demos what they run (the `train` extra; `demo-review` adds `review`), the suite, lint and
# the benchmarks the `dev` and `spark` extras (the suite's Spark tests need pyspark). Each install
# leaves a stamp in .venv and runs again when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
REVIEW_STAMP := $(VENV)/.review-stamp
OUT ?= runs/demo
SEEDS ?= 2

TX_OUT ?= runs/demo-transactions
PAY_OUT ?= runs/demo-payments
REVIEW_OUT ?= runs/demo-review
REVIEW_DB := sqlite:///$(REVIEW_OUT)/alerts.db
REVIEW_PASSWORD := demo-review-password

.PHONY: demo demo-transactions demo-payments demo-review test test-slow check-readme lint bench bench-quick bench-suite bench-own-data bench-history quality compare clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

# The demos need training and nothing else (no pyspark, no test tools).
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $(DEMO_STAMP)

$(REVIEW_STAMP): $(DEMO_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[train,review]"
	touch $(REVIEW_STAMP)

# Every demo writes into its own folder under runs/ and replaces what an earlier run wrote there
# (--overwrite: without it, aedetect refuses to replace an existing output).
demo: $(DEMO_STAMP)
	$(BIN)/aedetect demo --out $(OUT) --overwrite

# A second demo on your-own-data terms: a generated transactions table with categories, missing
# values and five planted fraud kinds; the schema is inferred and printed by train.
demo-transactions: $(DEMO_STAMP)
	$(BIN)/aedetect data generate --kind transactions --rows 30000 --fraud-rate 0.02 --out $(TX_OUT)/transactions.csv.gz --overwrite
	$(BIN)/aedetect train --data $(TX_OUT)/transactions.csv.gz --out $(TX_OUT)/model --epochs 30 --overwrite
	$(BIN)/aedetect evaluate --model $(TX_OUT)/model --data $(TX_OUT)/transactions.csv.gz --out $(TX_OUT)/metrics.json --overwrite
	$(BIN)/aedetect score --model $(TX_OUT)/model --data $(TX_OUT)/transactions.csv.gz --out $(TX_OUT)/scored.csv --id-columns transaction_id --overwrite

# A raw payments log (card_id, terminal_id, amount) whose frauds show only against each card's and
# terminal's own history: 60 days, 2000 cards, 400 terminals, about 165,000 rows (runs/ is ignored);
# trained with entity history features (docs/history.md), evaluated on its later test rows, scored.
demo-payments: $(DEMO_STAMP)
	$(BIN)/aedetect data generate --kind payments --days 60 --cards 2000 --terminals 400 --seed 0 --out $(PAY_OUT)/payments.csv.gz --overwrite
	$(BIN)/aedetect train --data $(PAY_OUT)/payments.csv.gz --out $(PAY_OUT)/model --entity-columns card_id,terminal_id --exclude-columns fraud_kind,transaction_id --overwrite
	$(BIN)/aedetect evaluate --model $(PAY_OUT)/model --data $(PAY_OUT)/payments.csv.gz --out $(PAY_OUT)/metrics.json --overwrite
	$(BIN)/aedetect score --model $(PAY_OUT)/model --data $(PAY_OUT)/payments.csv.gz --out $(PAY_OUT)/scored.csv --id-columns transaction_id --overwrite

# The review loop (docs/review.md) on a smaller payments log (30 days, 500 cards, 100 terminals): a
# model with entity history, its flagged rows as alerts in a SQLite store (made afresh each run), a
# lead `demo` with a fixed demo password, and the review app on http://127.0.0.1:8080 (Ctrl-C stops it).
demo-review: $(REVIEW_STAMP)
	$(BIN)/aedetect data generate --kind payments --days 30 --cards 500 --terminals 100 --seed 0 --out $(REVIEW_OUT)/payments.csv.gz --overwrite
	$(BIN)/aedetect train --data $(REVIEW_OUT)/payments.csv.gz --out $(REVIEW_OUT)/model --entity-columns card_id,terminal_id --exclude-columns fraud_kind,transaction_id --overwrite
	rm -f $(REVIEW_OUT)/alerts.db $(REVIEW_OUT)/alerts.db-wal $(REVIEW_OUT)/alerts.db-shm
	$(BIN)/aedetect score --model $(REVIEW_OUT)/model --data $(REVIEW_OUT)/payments.csv.gz --out $(REVIEW_OUT)/scored.csv --id-columns transaction_id --alerts $(REVIEW_DB) --overwrite
	AEDETECT_PASSWORD=$(REVIEW_PASSWORD) $(BIN)/aedetect review users add demo --role lead --db $(REVIEW_DB)
	@echo "review app: http://127.0.0.1:8080/login  name: demo  password: $(REVIEW_PASSWORD) (a demo password, for this local demo only)"
	$(BIN)/aedetect review --db $(REVIEW_DB) --port 8080

# Quality over 5 seeds, both protocols: defaults beside the guide's recipe and Mahalanobis distance
quality: $(STAMP)
	$(BIN)/python benchmarks/bench_quality.py --seeds 5 --protocols guide time --out runs/bench/quality.md

# The autoencoder beside the baselines on the real data, both protocols: runs/compare-*/report.html
compare: $(STAMP)
	$(BIN)/aedetect compare --protocol guide --seeds $(SEEDS) --report runs/compare-guide --overwrite
	$(BIN)/aedetect compare --protocol time --seeds $(SEEDS) --report runs/compare-time --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# Reruns `aedetect demo --seed 0` on the real data and fails if its table differs from README.md's
# (meant for the machine that printed the README: elsewhere the last digits may differ).
check-readme: $(STAMP)
	$(BIN)/python -m pytest -m slow tests/test_readme.py

# Benchmarks need the `bench` extra (PyOD and the CPU build of torch) on top of the dev install.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,spark,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-quick: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

# PR-AUC per planted fraud kind on generated transactions: autoencoder beside IsolationForest
bench-own-data: $(STAMP)
	$(BIN)/python benchmarks/bench_own_data.py --rows 30000 --seeds 3 --out runs/bench/own-data.md

# Entity history on generated payment logs (60 days; the first 40 train, the last 20 are scored),
# 3 seeds: aedetect with --entity-columns card_id,terminal_id beside aedetect without history and
# IsolationForest on the same history features; PR-AUC per fraud kind: runs/bench/history.md, .json
bench-history: $(STAMP)
	$(BIN)/python benchmarks/bench_history.py --seeds 3 --out runs/bench/history.md --json runs/bench/history.json

# Development suite: the defaults beside IsolationForest, ECOD, PyOD's AutoEncoder, a plain Keras
# autoencoder and Mahalanobis distance on 12 public ADBench sets, 3 seeds: runs/bench/suite.md
bench-suite: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_suite.py --seeds 3 --out runs/bench/suite.md

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

clean:
	rm -rf runs build *.egg-info src/*.egg-info
