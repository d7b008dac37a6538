/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The settlement worker and the settings of settlement.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_WORKER_H
#define COMPAY_WORKER_H

extern void WorkerInit(void);
extern void WorkerWakeForEvents(void);

#endif							/* COMPAY_WORKER_H */
