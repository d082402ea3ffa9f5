# The two commands of the README: `make dev` runs the service locally,
# `make test` runs every test. Both install what they need first.
.PHONY: dev test setup

dev:
	scripts/dev.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh
