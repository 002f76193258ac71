/* XEP-0092 Software Version: the server's name and version, and its
 * operating system unless the operator hides it. */
#include <sys/utsname.h>

#include "st_config.h"
#include "starling/module.h"

#define NS_VERSION "jabber:iq:version"

struct version_opts {
    bool hide_os;
};

static const struct st_option version_options[] = {
    {"hide_os", ST_OPT_BOOL, offsetof(struct version_opts, hide_os), "false", 0, 0, NULL, NULL,
     "leave the operating system out of the reply"},
    ST_OPT_END,
};

static int on_version(struct st_event *ev, void *ud)
{
    const struct version_opts *o = ud;
    struct st_xml *r = st_iq_result(ev->stanza);
    struct st_xml *q = st_xml_add_child(r, "query", NS_VERSION);
    st_xml_add_text_child(q, "name", "Starling");
    st_xml_add_text_child(q, "version", ST_VERSION);
    struct utsname u;
    if (!o->hide_os && uname(&u) == 0)
        st_xml_add_text_child(q, "os", u.sysname);
    return st_reply(ev, r);
}

static int version_load(struct st_module *m, const void *options)
{
    st_module_hook(m, "iq-get/host/" NS_VERSION ":query", on_version, (void *)options, 0);
    st_module_feature(m, NS_VERSION, false);
    return 0;
}

const struct st_module_def st_mod_version = {
    .name = "version",
    .description = "XEP-0092 Software Version",
    .options = version_options,
    .options_size = sizeof(struct version_opts),
    .default_on = true,
    .load = version_load,
};
