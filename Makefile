# The two commands a newcomer needs: `make test` and `make demo`.
# Python tools (moto, cfn-lint, sam, cargo-lambda, zig; checkov apart) live in
# the project virtualenvs ./.venv and ./.venv-checkov, created from the pinned
# requirements-*.txt by scripts/venv.sh on first use.

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv

.PHONY: org-template all test demo venv fmt-check clippy lint-template package deploy validate build clean scale slot-scale bench adversary flake-hunt

all: test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt requirements-checkov.txt scripts/venv.sh
	bash scripts/venv.sh

## make test: formatting, clippy (-D warnings), the template checks, then every
## test (the EventBridge wiring of template.yaml is one of them).
test: venv fmt-check clippy lint-template
	$(CARGO) test --workspace --all-targets

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# cfn-lint, SAM's own validation with its lint, and a checkov security scan
# (zero failed checks; each skip is justified in the template). No AWS call:
# the region and credentials are dummies, checkov's online lookups are off.
TEMPLATE_ENV := AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	SAM_CLI_TELEMETRY=0 BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
lint-template: venv
	$(VENV)/bin/cfn-lint template.yaml
	$(TEMPLATE_ENV) $(VENV)/bin/sam validate --lint --template template.yaml
	$(TEMPLATE_ENV) .venv-checkov/bin/checkov --quiet --compact --skip-download \
		--framework cloudformation --file template.yaml

## make package: `sam build` (cargo-lambda, release) and one zip per function
## with its size. x86_64 here; ARCH=arm64 where that Rust target is installed.
## About 15 minutes cold; not part of make test.
package: venv
	bash scripts/package.sh

## make deploy [POLICIES=file.json] [SAM_ARGS=--guided]: `sam deploy` (the
## pinned one in .venv) of what make package built, as the architecture it
## built, with samconfig.toml's parameters (DryRun included) and, given
## POLICIES, that policy document, checked first by `ebs-lifecycle validate`
## (scripts/deploy.py says why each step is there).
deploy: venv
	$(VENV)/bin/python scripts/deploy.py $(if $(POLICIES),--policies $(POLICIES)) -- $(SAM_ARGS)

## make validate POLICIES=file.json: the policy document checked exactly as
## the functions check it at start-up, before anything is deployed.
validate: venv
	$(VENV)/bin/python scripts/deploy.py --validate-only $(if $(POLICIES),--policies $(POLICIES))

## make org-template: the stack for CloudFormation StackSets (every account
## of an organisation; StackSets refuse the SAM transform): dist/org-template.json,
## the transform done offline, function code read from per-region artifact
## buckets, and dist/org-artifact-buckets.yaml for those buckets. cfn-lint
## clean but for W3037: its SNS action list lacks sns:Receive, which topic
## policies use. See docs/operations.md, "Every account of an organisation".
org-template: venv
	$(VENV)/bin/python scripts/org_template.py dist
	$(VENV)/bin/cfn-lint --ignore-checks W3037 -- dist/org-template.json dist/org-artifact-buckets.yaml

## make demo [DAYS=n]: a year (or n days) in the life of a seeded account on
## moto (127.0.0.1): the ten function binaries, each under a local Lambda Runtime API with the
## template's environment, driven by ticks, EC2's completion events and the
## daily runs in simulated time (see docs/development.md, "The demo").
## Built with --all-targets, as make test builds: the dependencies resolve to
## the same features, so after make test only the function binaries link
## (about 20 s), nothing is compiled twice.
demo: venv
	$(CARGO) build --workspace --all-targets
	$(VENV)/bin/python scripts/demo.py --bin-dir target/debug $(if $(DAYS),--days $(DAYS))

## make scale: the large-account scenario (tests/tests/scale.rs) at 10,000
## volumes and 100,000 snapshots (SCALE_VOLUMES=2000 for the smaller
## account); make test runs it at 200 volumes.
SCALE_VOLUMES ?= 10000
scale: venv
	SCALE_VOLUMES=$(SCALE_VOLUMES) $(CARGO) test -p integration-tests --test scale -- --nocapture

## make adversary: the attacker at length (docs/development.md, "The
## adversary"): the pure rules' property test at ADVERSARY_CASES cases, then
## the functions on moto for ADVERSARY_SEEDS attacks of ADVERSARY_DAYS
## simulated days each. make test runs both short.
## Measured (`time make adversary`, 7 min 47 s): 5,000 cases in 2.5 s;
## 12 seeds of 20 days in the source region (2,400 invocations, 709
## deletions) and 12 beyond it (2,160 invocations, 978 deletions, 398 DR
## copies, 397 vault locks checked, 59 instance stops), side by side, 464 s.
ADVERSARY_CASES ?= 5000
ADVERSARY_SEEDS ?= 12
ADVERSARY_DAYS ?= 20
ADVERSARY_FIRST_SEED ?= 100
adversary: venv
	ADVERSARY_CASES=$(ADVERSARY_CASES) $(CARGO) test -p ebs-lifecycle-core --test adversary
	ADVERSARY_SEEDS=$(ADVERSARY_SEEDS) ADVERSARY_DAYS=$(ADVERSARY_DAYS) ADVERSARY_FIRST_SEED=$(ADVERSARY_FIRST_SEED) \
		$(CARGO) test -p integration-tests --test adversary -- --nocapture

## make flake-hunt: every integration test (the moto-backed suites, the
## fault proxy, the adversary's short run) FLAKE_RUNS times in a row, built
## once; stops at the first failure and names the run. Not part of make
## test: a test that fails now and then is a bug to find here, not a
## reason to re-run CI.
FLAKE_RUNS ?= 10
flake-hunt: venv
	$(CARGO) test -p integration-tests --no-run
	for i in $$(seq 1 $(FLAKE_RUNS)); do \
		echo "== flake hunt: run $$i of $(FLAKE_RUNS)"; \
		$(CARGO) test -p integration-tests -q || { echo "flake hunt: run $$i failed"; exit 1; }; \
	done; echo "flake hunt: $(FLAKE_RUNS) runs, 0 failures"

## make slot-scale: 10,000 volumes due in one slot under EC2's emulated
## CreateSnapshot bucket (burst 100, 5 a second), 15-minute ticks back to
## back (tests/tests/create_snapshots_pacing.rs). Real time: about 35
## minutes. SLOT_VOLUMES sets the number.
SLOT_VOLUMES ?= 10000
slot-scale: venv
	SLOT_VOLUMES=$(SLOT_VOLUMES) $(CARGO) test -p integration-tests --test create_snapshots_pacing -- --ignored --nocapture

## make bench: criterion benchmarks of the pure core (retention planner,
## policy and event parsing), then peak memory and start-to-ready time of
## each function's release binary (scripts/bench_functions.py). Figures and
## the machine are in BENCHMARKS.md. Not part of make test.
bench: venv
	$(CARGO) bench -p ebs-lifecycle-core
	$(VENV)/bin/python scripts/bench_functions.py

build:
	$(CARGO) build --workspace


clean:
	$(CARGO) clean
	rm -rf $(VENV) .venv-checkov .aws-sam .demo dist
