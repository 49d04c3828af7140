# livecamp — the two commands people need, and a few for development.
.PHONY: run test web e2e services fmt lint clean

run:            ## build everything and run on the embedded default (SQLite, demo data)
	scripts/run.sh serve

test:           ## every check CI runs
	scripts/test.sh

web:            ## build the browser app into web/dist
	scripts/build-web.sh

e2e:            ## browser test against a debug build
	cargo build --locked --bin livecamp && scripts/e2e.sh target/debug/livecamp

services:       ## make sure PostgreSQL and Redis run for the tests
	scripts/test-services.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	cargo clean && rm -rf web/dist web/app/node_modules web/e2e/node_modules
