# The two commands a newcomer needs: `make test` and `make demo`.
# Python tools (moto, cfn-lint) live in the project virtualenv ./.venv, created
# from the pinned requirements-dev.txt by scripts/venv.sh on first use.

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv

.PHONY: all test demo venv fmt-check clippy lint-template unit build clean

all: test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt scripts/venv.sh
	bash scripts/venv.sh

## make test: formatting, clippy (-D warnings), cfn-lint, then every test.
test: venv fmt-check clippy lint-template
	$(CARGO) test --workspace --all-targets

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-template: venv
	$(VENV)/bin/cfn-lint template.yaml

## make demo: moto on 127.0.0.1, a seeded account, create-snapshots run twice and
## complete-snapshots fed the completion events EC2 would send
## (built with --workspace so it shares the dependency builds of make test)
## through the Lambda runtime interface, a table of what it made.
demo: venv
	$(CARGO) build --workspace --bins
	$(VENV)/bin/python scripts/demo.py --bin-dir target/debug

build:
	$(CARGO) build --workspace


clean:
	$(CARGO) clean
	rm -rf $(VENV) .aws-sam .demo
