# Developer entry points. `make test` is the README's test command and what .ci/run calls.
CARGO ?= cargo

.PHONY: test lint fmt-check clippy unit demo bench-local demo-fake bench-webhook infra-test

## Full check: formatting, lints, every test in the workspace, the infrastructure checks.
test: fmt-check clippy unit infra-test

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked --no-fail-fast; \
	else \
		$(CARGO) test --workspace --locked --no-fail-fast; \
	fi

## Terraform (infra/): fmt, init from the offline provider mirror, validate, terraform test
## (mocked provider), checkov, hadolint, apply + destroy against moto when CMA_MOTO_URL is set.
infra-test:
	bash .ci/infra-test.sh

## The README's first command: build the runner and cma-local (cargo shows its progress),
## then run the whole pipeline on this machine with no cloud: fake control plane, signed
## webhook delivery, the webhook handler on 127.0.0.1, in-memory queue, dispatcher,
## Docker launcher (engine + cma/runner:ci present) or process launcher, and the runner's
## real tool calls, printed as a transcript. Extra flags: make demo ARGS='--launcher process'.
demo:
	$(CARGO) build --locked -p runner -p local
	$(CARGO) run --locked --quiet -p local --bin cma-local -- demo $(ARGS)

## The local stack's webhook → first tool result, process and Docker launchers (figures only).
bench-local:
	$(CARGO) build --locked --release -p runner -p local
	$(CARGO) run --locked --quiet --release -p local --bin cma-local -- bench $(ARGS)

## Run the fake control plane with a scripted demo session (prints its URL and credentials).
demo-fake:
	$(CARGO) run --locked -p cma-tests --bin fake-control-plane -- --demo

## Webhook benchmark: builds the Lambda zips (`lambda` profile, needs cargo-lambda), then
## prints warm handler latency, bootstrap start-to-ready time and the zip sizes.
bench-webhook:
	cargo lambda build --profile lambda --output-format zip -p webhook --bin webhook --bin sweep
	$(CARGO) bench --locked -p webhook --bench handler
