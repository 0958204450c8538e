# Developer entry points. `make test` is the README's test command and what .ci/run calls.
CARGO ?= cargo

.PHONY: test lint fmt-check clippy unit demo-fake

## Full check: formatting, lints, every test in the workspace.
test: fmt-check clippy unit

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

## Run the fake control plane with a scripted demo session (prints its URL and credentials).
demo-fake:
	$(CARGO) run --locked -p cma-tests --bin fake-control-plane -- --demo
