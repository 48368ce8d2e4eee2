# Shortcuts for the commands in the README. Everything here is also a plain
# command you can run yourself.

BIN := target/release
TOOLS := orca-find-volume orca-backup-name orca-export orca-verify orca-prune orca-restore orca-list orca-report orca-copy orca-drill orca-keygen orca-guard orca-backup orca-schedule
SHELLS := bash zsh fish powershell

.PHONY: build backup verify prune list restore test test-clean demo bench completions

build:
	cargo build --release --workspace --bins

## make backup [NAME=before-migration] [ARGS="--stop --auto-cleanup"]
backup:
	scripts/orca-backup.sh $(if $(NAME),--name "$(NAME)") $(ARGS)

## make verify [ARCHIVE=path]: one archive, or every backup in the catalog
verify: build
	$(if $(ARCHIVE),$(BIN)/orca-verify "$(ARCHIVE)",$(BIN)/orca-list --verify --format table)

## make prune [ARGS="--dry-run"]
prune: build
	$(BIN)/orca-prune $(ARGS)

list: build
	$(BIN)/orca-list --format table

## make restore ARCHIVE=path [ARGS="--stop"]
restore: build
	$(BIN)/orca-restore "$(ARCHIVE)" $(ARGS)

test:
	scripts/test.sh

## After the tests, on a developer's machine: remove the test images,
## containers and volumes, and the build's target/ (several GB).
test-clean:
	cargo run --quiet -p orca-test-support --bin orca-test-images -- --remove
	cargo clean

demo:
	scripts/demo.sh

bench:
	scripts/bench.sh

## Completion scripts for every tool in target/completions/<shell>/
completions: build
	@for sh in $(SHELLS); do mkdir -p target/completions/$$sh; \
	  for t in $(TOOLS); do $(BIN)/$$t --completions $$sh > target/completions/$$sh/$$t.$$sh; done; done
	@echo "written to target/completions/"
