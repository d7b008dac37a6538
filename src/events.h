/*-------------------------------------------------------------------------
 *
 * events.h
 *	  Payment events: the retention setting and the publisher's wake-up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_EVENTS_H
#define COMPAY_EVENTS_H

extern void EventsInit(void);

#endif							/* COMPAY_EVENTS_H */
