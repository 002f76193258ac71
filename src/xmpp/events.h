/* Named events with prioritised handlers (the hook registry). Event names
 * follow the delivery rules (see include/starling/module.h). */
#ifndef ST_XMPP_EVENTS_H
#define ST_XMPP_EVENTS_H

#include "base/map.h"

struct st_event;
typedef int (*st_event_handler)(struct st_event *ev, void *ud);

struct st_handler {
    struct st_handler *next;
    st_event_handler fn;
    void *ud;
    int priority;
    const void *owner; /* the module that registered it, for removal */
};

struct st_events {
    struct st_map by_name; /* name -> struct st_handler* (sorted by priority, high first) */
};

void st_events_init(struct st_events *e);
/* Frees every handler. */
void st_events_free(struct st_events *e);
/* Registers fn for name; owner tags it for st_events_remove_owner. */
int st_events_add(struct st_events *e, const char *name, st_event_handler fn, void *ud,
                  int priority, const void *owner);
/* Removes every handler registered with owner. */
void st_events_remove_owner(struct st_events *e, const void *owner);
/* Runs the handlers of ev->name in priority order until one returns ST_EV_HANDLED.
 * Returns ST_EV_HANDLED or ST_EV_PASS. */
int st_events_fire(struct st_events *e, struct st_event *ev);
/* True when any handler exists for name. */
int st_events_has(struct st_events *e, const char *name);

#endif
