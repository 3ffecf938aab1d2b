# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: install run test lint migrate check-migrations bench bench-quick clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/alembic upgrade head

# Migrate, seed the demo data, start everything, print the simulator's address and the admin login;
# Ctrl-C stops it all (devtools/run.py). Embedded defaults (no REDIS_URL): one gunicorn process holding
# the queue, its worker thread and the periodic tasks; with REDIS_URL: gunicorn + `flask worker` x
# WORKER_PROCESSES (2) + `flask sender` + `flask scheduler`. The environment (or .env) wins: PORT, REDIS_URL, WHATSAPP_API_BASE, N8N_WEBHOOK_URL.
run: install
	@$(if $(filter command line,$(origin PORT)),PORT=$(PORT) )exec $(BIN)/python -m devtools.run

# The whole suite. On SQLite + fakeredis by default; set TEST_DATABASE_URL / TEST_REDIS_URL
# to run the same tests against real PostgreSQL and Redis (as CI does).
test: install
	$(BIN)/pytest

# ruff, then mypy (strict on bot/, services/, models/; the rest checked with its annotations: pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy .

check-migrations: install
	$(BIN)/alembic check

# All the benchmarks and one summary table (bench/README.md). They TRUNCATE the database and FLUSH the
# Redis db they use: by default PostgreSQL `test` and Redis db 5; BENCH_DATABASE_URL / BENCH_REDIS_URL move them.
BENCH_ARGS = $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL)) $(if $(BENCH_REDIS_URL),--redis-url $(BENCH_REDIS_URL))

bench: install
	-$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

bench-quick: install
	-$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/run_all.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Translations: extract every gettext(locale, ...) / ngettext / _(locale, ...) / N_ string into
# translations/messages.pot, merge it into the tr and en catalogs, and keep Turkish's two plural forms
# (pybabel writes nplurals=1 for tr). Then fill the empty Turkish msgstr and run `make check-messages`.
# The keywords must match translations/check.py's KEYWORDS.
.PHONY: messages check-messages
messages: install
	$(BIN)/pybabel extract -F babel.cfg --no-default-keywords -k gettext:2 -k ngettext:2,3 -k _:2 -k N_ \
	  --add-comments=TRANSLATORS: --strip-comments --no-location --sort-output \
	  --project="ZiraAI WhatsApp bot" -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -D messages \
	  --no-fuzzy-matching --ignore-pot-creation-date
	$(BIN)/python -m translations.fix_headers

# The staff console's text (domain `console`, no .pot kept): extract with babel-console.cfg, update the
# tr and en console.po, keep Turkish's two plural forms; then fill the empty Turkish msgstr.
# The keywords must match translations/check.py's CONSOLE_KEYWORDS.
.PHONY: console-messages
console-messages: install
	$(BIN)/pybabel extract -F babel-console.cfg --no-default-keywords -k _ -k _n:1,2 -k console_text:2 \
	  -k console_ntext:2,3 -k flash_text:2 -k refuse -k N_ --no-location --sort-output --omit-header -o $(VENV)/console.pot .
	$(BIN)/pybabel update -i $(VENV)/console.pot -d translations -D console --no-fuzzy-matching \
	  --ignore-obsolete --ignore-pot-creation-date
	$(BIN)/python -m translations.fix_headers

check-messages: install
	$(BIN)/python -m translations.check
