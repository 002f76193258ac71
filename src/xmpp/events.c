/* The hook registry (see events.h): per-name singly linked lists kept in
 * priority order so firing is a walk. */
#include "xmpp/events.h"
#include "base/mem.h"
#include "starling/module.h"

void st_events_init(struct st_events *e)
{
    st_map_init(&e->by_name);
}

void st_events_free(struct st_events *e)
{
    for (struct st_map_entry *it = st_map_first(&e->by_name); it;
         it = st_map_next(&e->by_name, it)) {
        struct st_handler *h = it->value;
        while (h) {
            struct st_handler *n = h->next;
            st_free(h);
            h = n;
        }
    }
    st_map_free(&e->by_name);
}

int st_events_add(struct st_events *e, const char *name, st_event_handler fn, void *ud,
                  int priority, const void *owner)
{
    struct st_handler *h = ST_NEW(struct st_handler);
    h->fn = fn;
    h->ud = ud;
    h->priority = priority;
    h->owner = owner;
    struct st_handler *head = st_map_get(&e->by_name, name);
    struct st_handler **pp = &head;
    while (*pp && (*pp)->priority >= priority)
        pp = &(*pp)->next;
    h->next = *pp;
    *pp = h;
    st_map_set(&e->by_name, name, head);
    return 0;
}

void st_events_remove_owner(struct st_events *e, const void *owner)
{
    struct st_map_entry *it = st_map_first(&e->by_name);
    while (it) {
        struct st_map_entry *next = st_map_next(&e->by_name, it);
        struct st_handler *head = it->value;
        struct st_handler **pp = &head;
        while (*pp) {
            if ((*pp)->owner == owner) {
                struct st_handler *dead = *pp;
                *pp = dead->next;
                st_free(dead);
            } else {
                pp = &(*pp)->next;
            }
        }
        if (head)
            it->value = head;
        else
            st_map_del(&e->by_name, it->key);
        it = next;
    }
}

int st_events_fire(struct st_events *e, struct st_event *ev)
{
    for (struct st_handler *h = st_map_get(&e->by_name, ev->name); h; h = h->next) {
        if (h->fn(ev, h->ud) == ST_EV_HANDLED)
            return ST_EV_HANDLED;
    }
    return ST_EV_PASS;
}

int st_events_has(struct st_events *e, const char *name)
{
    return st_map_get(&e->by_name, name) != NULL;
}
