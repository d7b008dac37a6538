/*-------------------------------------------------------------------------
 *
 * events.c
 *	  Payment events (src/events.sql): the setting of their retention and
 *	  compay.event_wake(), which wakes the worker's publisher once the
 *	  emitting transaction commits.
 *
 * Emitting is one INSERT into compay.event_queue and a call of
 * compay.event_wake(): the worker (src/worker.c) is woken right after the
 * commit, so that it publishes the new events into compay.events and
 * notifies LISTEN clients within milliseconds, never before the emitting
 * transaction is visible.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "events.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(compay_event_wake);

static int	event_retention_min = 7 * 24 * 60;

void
EventsInit(void)
{
	DefineCustomIntVariable("compay.event_retention",
							"How long published events are kept in compay.events.",
							"The publisher deletes older events; 0 keeps them for ever.",
							&event_retention_min, 7 * 24 * 60, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
}

/*
 * compay.event_wake(): once this transaction commits, the worker publishes
 * the events it emitted.  A rollback wakes nobody.
 */
Datum
compay_event_wake(PG_FUNCTION_ARGS pg_attribute_unused())
{
	WorkerWakeForEvents();
	PG_RETURN_VOID();
}
