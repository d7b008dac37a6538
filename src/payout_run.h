/*-------------------------------------------------------------------------
 *
 * payout_run.h
 *	  How payout rounds and deposit polls are run (src/payout_run.c): the
 *	  two transaction drivers of their steps, the runners' lock, the
 *	  procedures and the wallet health.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_PAYOUT_RUN_H
#define COMPAY_PAYOUT_RUN_H

typedef enum PayoutDriver
{
	PAYOUT_DRIVER_WORKER,		/* Start/CommitTransactionCommand */
	PAYOUT_DRIVER_PROCEDURE		/* non-atomic CALL: SPI_commit */
} PayoutDriver;

typedef enum PayoutRunKind
{
	PAYOUT_RUN_PAYOUTS,			/* queue, build, relay, confirm */
	PAYOUT_RUN_DEPOSITS			/* read and credit deposits */
} PayoutRunKind;

extern void PayoutRunInit(void);
extern bool PayoutQuery(const char *sql, int nargs, const char *arg1, const char *arg2,
						char **fields, int nfields);
extern bool PayoutRunLocked(PayoutRunKind kind, int64 *moved);
extern bool PayoutRunHealthDue(void);
extern void PayoutRunRecordHealth(const char *runner, const char *state, int64 moved,
								  const char *error);

#endif							/* COMPAY_PAYOUT_RUN_H */
