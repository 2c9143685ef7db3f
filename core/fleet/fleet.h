/*
 * fleet/fleet.h - `engine fleet render` (fleet.c): an inventory of
 * databases into Kubernetes manifests (a CronJob per database, a ConfigMap
 * for a runbook next to the inventory). Above model/: it reads runbooks'
 * parameters, never runs anything.
 */
#ifndef ENGINE_FLEET_H
#define ENGINE_FLEET_H

#include <stdio.h>
#include "model/model.h"

typedef struct eng__fleet eng__fleet;

/* The keys each mapping of an inventory accepts, by place: "" the top,
 * "defaults", "databases[]" (see eng__keys). */
extern const eng__keyset eng__fleet_keysets[];
/* The runbooks the container image ships (file names), NULL-terminated. */
extern const char *const eng__fleet_image_runbooks[];
/* Check an inventory's text (file names it in diagnostics; a runbook named
 * by a relative path is looked up in dir; with dir NULL no file is read and
 * only the image's runbooks are known). NULL with errors in d when it is
 * invalid; otherwise the databases, schedules spread. */
eng__fleet *eng__fleet_parse(const char *file, const char *dir,
                             const char *text, size_t len, eng__diags *d);
void eng__fleet_free(eng__fleet *f);
size_t eng__fleet_count(const eng__fleet *f);
const char *eng__fleet_name(const eng__fleet *f, size_t i);
/* Database i's Kubernetes objects (a ConfigMap when its runbook is a local
 * file, then its CronJob) as a new JSON array. */
json_t *eng__fleet_docs(const eng__fleet *f, size_t i);
/* `engine fleet render`: read the inventory and write every database's
 * objects as multi-document YAML to out, or with out_dir one file per
 * database (OUT_DIR/NAME.yaml). ENG_EXIT_USAGE for an invalid inventory
 * (nothing written), ENG_EXIT_FAILED when a file cannot be written. */
int eng__fleet_render(const char *inventory, const char *out_dir, FILE *out,
                      eng__diags *d);

#endif /* ENGINE_FLEET_H */
