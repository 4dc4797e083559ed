/* clock.h: the one monotonic clock the programs time their work with */
#ifndef LM_CLOCK_H
#define LM_CLOCK_H

double lm_now(void);  /* monotonic seconds (CLOCK_MONOTONIC), for intervals only */

#endif
