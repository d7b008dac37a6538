# compay: PGXS build.  `make`, `make install`, `make test`, `make demo`.

EXTENSION  = compay
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = compay
OBJS = \
	src/check_constraints.o \
	src/compay.o \
	src/compay_util.o \
	src/credit.o \
	src/credit_ops.o \
	src/events.o \
	src/idempotency.o \
	src/jobs.o \
	src/journal_hash.o \
	src/ledger.o \
	src/ledger_chain_heads.o \
	src/ledger_stripes.o \
	src/ledger_accounts.o \
	src/ledger_heap.o \
	src/ledger_holds.o \
	src/ledger_transfer.o \
	src/metering.o \
	src/metering_batch.o \
	src/metering_heap.o \
	src/monero_address.o \
	src/node_roles.o \
	src/payout.o \
	src/payout_reconcile.o \
	src/payout_run.o \
	src/pricing.o \
	src/pricing_config.o \
	src/rational.o \
	src/reward.o \
	src/shard.o \
	src/spi_util.o \
	src/wallet_rpc.o \
	src/worker.o

# The install script of the current version is built from one SQL piece
# per concern, kept beside its C, in this order (a piece may use what the
# pieces before it create; verify.sql reads every table; amounts.sql gives the
# money functions of every piece their numeric twins).
# Released install scripts and upgrade scripts are shipped as they are.
SQL_PIECES = \
	src/credit.sql \
	src/roles.sql \
	src/ledger.sql \
	src/reward.sql \
	src/pricing.sql \
	src/jobs.sql \
	src/payments.sql \
	src/settlement.sql \
	src/worker.sql \
	src/monero_address.sql \
	src/wallet_rpc.sql \
	src/payout.sql \
	src/settlement_runs.sql \
	src/payout_run.sql \
	src/deposit.sql \
	src/reports.sql \
	src/dashboard.sql \
	src/wallet_tools.sql \
	src/shard.sql \
	src/earnings.sql \
	src/payout_addresses.sql \
	src/withdrawal.sql \
	src/payout_reconcile.sql \
	src/events.sql \
	src/deposit_request.sql \
	src/metering.sql \
	src/verify.sql \
	src/amounts.sql
# The router's extension, compay_router (docs/scaling.md): the credit type
# of src/credit.sql and the shard API's PL/Proxy twins (sql/router/).
ROUTER_PIECES = \
	src/credit.sql \
	sql/router/router.sql \
	sql/router/routed.sql \
	sql/router/combine.sql
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql sql/router/compay_router--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql)) \
	sql/router/compay_router.control
# The documentation goes to $(docdir)/extension, which every extension
# shares: installed under names of our own (compay-reference.md, ...).
DOC_SOURCES = README.md CHANGELOG.md $(wildcard docs/*.md)
DOCS = $(addprefix doc_build/$(EXTENSION)-,$(notdir $(DOC_SOURCES)))
EXTRA_CLEAN = doc_build

# `make installcheck` against a running server (PGHOST, PGPORT, PGUSER):
# every pg_regress test (sql/NAME.sql with expected/NAME.out; NAME_1.out
# and the like are alternative outputs, not tests) and every isolation
# spec (test/isolation).
REGRESS = $(sort $(filter-out $(basename $(notdir $(wildcard expected/*_[0-9].out))),\
	$(basename $(notdir $(wildcard expected/*.out)))))
REGRESS_OPTS = --load-extension=$(EXTENSION)
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --load-extension=$(EXTENSION) --inputdir=test/isolation
COMPAY_HEADERS = $(wildcard src/*.h)
SHLIB_LINK += -lgmp -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.DEFAULT_GOAL := all
.PHONY: test demo bench

# The two entry points of README.md; both install what they need first.
test:
	bash test/check.sh

demo:
	bash test/demo.sh

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PIECES)
	for f in $^; do cat "$$f"; echo; done >$@

sql/router/compay_router--$(EXTVERSION).sql: $(ROUTER_PIECES)
	for f in $^; do sed '/^\\echo Use "CREATE EXTENSION compay"/d' "$$f"; echo; done >$@

doc_build/$(EXTENSION)-%.md: %.md
	@mkdir -p doc_build
	cp $< $@
doc_build/$(EXTENSION)-%.md: docs/%.md
	@mkdir -p doc_build
	cp $< $@

ifneq ($(wildcard $(PGXS)),)
# PostgreSQL's headers are system headers to us: -Wextra stays on for our
# code without failing on theirs.
PG_CPPFLAGS += -isystem $(shell $(PG_CONFIG) --includedir-server)
include $(PGXS)
# PGXS tracks no header dependencies: rebuild every object when any of our
# headers changes, so that no object keeps an old struct layout.
$(OBJS) $(OBJS:.o=.bc): $(COMPAY_HEADERS)
all: $(DOCS)
else
all install:
	@echo "PostgreSQL's build files were not found; run 'bash test/deps.sh' first." >&2
	@exit 1
endif
