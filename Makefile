# The two commands of the README: `make dev` runs the service locally,
# `make test` runs every test. Both install what they need first.
.PHONY: dev test setup bench

dev:
	scripts/dev.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh

# Cold start, warm latency, memory, size and DynamoDB requests per flow of the
# release functions (not a test; see docs/performance.md).
bench:
	scripts/bench.sh
