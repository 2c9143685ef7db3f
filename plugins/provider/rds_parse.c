/*
 * rds_parse.c - RDS Query API answers into structs.
 *
 * Answers look like <ActionResponse><ActionResult><DBInstances><DBInstance>
 * ... (lists) or <ActionResult><DBInstance> (one), with <Marker> next to
 * the list when more pages follow. They come from the network: every
 * field may be missing, repeated or absurd; missing ones become "".
 */
#include "provider_int.h"

#include <stdlib.h>
#include <string.h>

static char *dup_text(const aws_xml *x, const char *name) {
  const char *t = aws_xml_text(x, name);
  return eng_xstrdup(t ? t : "");
}

/* The <...Result> element of the answer (or the root when there is none). */
static const aws_xml *result_of(const aws_xml *doc) {
  if (!doc) return NULL;
  for (const aws_xml *c = doc->child; c; c = c->next) {
    size_t n = strlen(c->name);
    if (n > 6 && !strcmp(c->name + n - 6, "Result")) return c;
  }
  return doc;
}

/* Elements named `item` in the result, directly or inside `list`. */
static size_t collect(const aws_xml *doc, const char *list, const char *item,
                      const aws_xml ***out, char **marker) {
  const aws_xml *r = result_of(doc);
  size_t n = 0, cap = 0;
  const aws_xml **v = NULL;
  if (marker) {
    const char *m = aws_xml_text(r, "Marker");
    *marker = m && *m ? eng_xstrdup(m) : NULL;
  }
  const aws_xml *parents[2] = {r, aws_xml_child(r, list)};
  for (int k = 0; k < 2; k++) {
    for (const aws_xml *c = parents[k] ? parents[k]->child : NULL; c;
         c = c->next) {
      if (strcmp(c->name, item)) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 8;
        v = eng_xrealloc(v, cap * sizeof *v);
      }
      v[n++] = c;
    }
  }
  *out = v;
  return n;
}

size_t rds_parse_instances(const aws_xml *doc, rds_instance **out,
                           char **marker) {
  const aws_xml **el = NULL;
  size_t n = collect(doc, "DBInstances", "DBInstance", &el, marker);
  rds_instance *v = eng_xcalloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; i < n; i++) {
    const aws_xml *x = el[i];
    const aws_xml *ep = aws_xml_child(x, "Endpoint");
    v[i].id = dup_text(x, "DBInstanceIdentifier");
    v[i].status = dup_text(x, "DBInstanceStatus");
    v[i].address = dup_text(ep, "Address");
    v[i].engine = dup_text(x, "Engine");
    v[i].engine_version = dup_text(x, "EngineVersion");
    v[i].klass = dup_text(x, "DBInstanceClass");
    v[i].created_at = dup_text(x, "InstanceCreateTime");
    v[i].latest_restorable = dup_text(x, "LatestRestorableTime");
    const char *port = aws_xml_text(ep, "Port");
    if (!port || !*port) port = aws_xml_text(x, "DbInstancePort");
    long p = port ? strtol(port, NULL, 10) : 0;
    v[i].port = p > 0 && p < 65536 ? (int)p : 0;
  }
  free(el);
  *out = v;
  return n;
}

void rds_instances_free(rds_instance *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    free(v[i].id);
    free(v[i].status);
    free(v[i].address);
    free(v[i].engine);
    free(v[i].engine_version);
    free(v[i].klass);
    free(v[i].created_at);
    free(v[i].latest_restorable);
  }
  free(v);
}

size_t rds_parse_snapshots(const aws_xml *doc, rds_snapshot **out,
                           char **marker) {
  const aws_xml **el = NULL;
  size_t n = collect(doc, "DBSnapshots", "DBSnapshot", &el, marker);
  rds_snapshot *v = eng_xcalloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; i < n; i++) {
    const aws_xml *x = el[i];
    v[i].id = dup_text(x, "DBSnapshotIdentifier");
    v[i].instance = dup_text(x, "DBInstanceIdentifier");
    v[i].status = dup_text(x, "Status");
    v[i].type = dup_text(x, "SnapshotType");
    v[i].engine = dup_text(x, "Engine");
    v[i].engine_version = dup_text(x, "EngineVersion");
    v[i].created_at = dup_text(x, "SnapshotCreateTime");
    v[i].created_t = aws_parse_time(v[i].created_at);
    const char *gb = aws_xml_text(x, "AllocatedStorage");
    long long g = gb ? strtoll(gb, NULL, 10) : 0;
    v[i].storage_gb = g > 0 && g < (1LL << 40) ? (int64_t)g : 0;
  }
  free(el);
  *out = v;
  return n;
}

void rds_snapshots_free(rds_snapshot *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    free(v[i].id);
    free(v[i].instance);
    free(v[i].status);
    free(v[i].type);
    free(v[i].engine);
    free(v[i].engine_version);
    free(v[i].created_at);
  }
  free(v);
}
