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
	src/payout.o \
	src/pricing.o \
	src/pricing_config.o \
	src/rational.o \
	src/reward.o \
	src/spi_util.o \
	src/wallet_rpc.o \
	src/worker.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)
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
