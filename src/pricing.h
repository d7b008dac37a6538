/*-------------------------------------------------------------------------
 *
 * pricing.h
 *	  Pricing models, discount tiers, task type mappings and market
 *	  adjustments, as cached by pricing_config.c and used by pricing.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_PRICING_H
#define COMPAY_PRICING_H

#include "credit.h"

/* One GB, as in the design: 2^30 bytes. */
#define PRICING_GB_BYTES	"1073741824"

typedef struct PricingTier
{
	int64		min_volume;
	int64		max_volume;		/* -1: no upper bound */
	char	   *discount_percent;	/* decimal text, 0..100 */
	char	   *keep_factor;	/* "(100 - discount_percent)/100", as text */
} PricingTier;

typedef struct PricingModel
{
	int32		id;
	char	   *name;
	char	   *currency;
	Credit		base_price;
	Credit		cpu_price;		/* per CPU-second */
	Credit		memory_price;	/* per GB-hour */
	Credit		storage_price;	/* per GB-hour */
	Credit		network_price;	/* per GB in + out */
	Credit		gpu_price;		/* per GPU-second */
	int			ncustom;
	char	  **custom_names;	/* sorted, for bsearch */
	Credit	   *custom_prices;
	bool		has_min;
	bool		has_max;
	Credit		min_price;
	Credit		max_price;
	int			ntiers;
	PricingTier *tiers;			/* ascending min_volume, not overlapping */
} PricingModel;

/* What price() needs for one task type. */
typedef struct PricingChoice
{
	const PricingModel *model;
	const char *market_factor;	/* clamped, decimal text */
} PricingChoice;

/* pricing_config.c */
extern void PricingInit(void);
extern PricingChoice PricingLookup(const char *task_type);
extern int64 PricingRequesterVolume(const char *requester);
extern const PricingTier *PricingTierFor(const PricingModel *model, int64 volume);

#endif							/* COMPAY_PRICING_H */
