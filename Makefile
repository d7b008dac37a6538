# compay: PGXS build.  `make`, `make install`, `make test`, `make demo`.

EXTENSION  = compay
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = compay
OBJS = \
	src/compay.o \
	src/credit.o \
	src/credit_ops.o \
	src/idempotency.o \
	src/jobs.o \
	src/journal_hash.o \
	src/ledger.o \
	src/ledger_heap.o \
	src/ledger_holds.o \
	src/ledger_transfer.o \
	src/monero_address.o \
	src/node_roles.o \
	src/payout.o \
	src/pricing.o \
	src/pricing_config.o \
	src/rational.o \
	src/reward.o \
	src/spi_util.o \
	src/wallet_rpc.o \
	src/worker.o

# The install script of the current version is built from one SQL piece
# per concern, kept beside its C, in this order (a piece may use what the
# pieces before it create; verify.sql reads every table, so it is last).
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
	src/deposit.sql \
	src/verify.sql
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))
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

ifneq ($(wildcard $(PGXS)),)
# PostgreSQL's headers are system headers to us: -Wextra stays on for our
# code without failing on theirs.
PG_CPPFLAGS += -isystem $(shell $(PG_CONFIG) --includedir-server)
include $(PGXS)
# PGXS tracks no header dependencies: rebuild every object when any of our
# headers changes, so that no object keeps an old struct layout.
$(OBJS) $(OBJS:.o=.bc): $(COMPAY_HEADERS)
else
all install:
	@echo "PostgreSQL's build files were not found; run 'bash test/deps.sh' first." >&2
	@exit 1
endif
