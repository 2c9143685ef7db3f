/*
 * fleet/fleet.h - `engine fleet render` (fleet.c reads, manifest.c
 * writes; runnable.c, cron.c): an inventory of
 * databases into Kubernetes manifests (a CronJob per database, a ConfigMap
 * for a runbook next to the inventory). Above model/: it reads runbooks'
 * parameters and steps to check them, never runs anything.
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
 * only the image's runbooks are known), and that every database's runbook
 * starts in its pod as rendered (the image's runbooks read from image_dir;
 * NULL: those are not checked). NULL with errors in d when it is invalid;
 * otherwise the databases, schedules spread. */
eng__fleet *eng__fleet_parse(const char *file, const char *dir,
                             const char *image_dir, const char *text,
                             size_t len, eng__diags *d);
void eng__fleet_free(eng__fleet *f);
size_t eng__fleet_count(const eng__fleet *f);
const char *eng__fleet_name(const eng__fleet *f, size_t i);
/* Database i's Kubernetes objects (a ConfigMap when its runbook is a local
 * file, then its CronJob) as a new JSON array. */
json_t *eng__fleet_docs(const eng__fleet *f, size_t i);
/* Read and check the inventory file (eng__fleet_parse, runbooks relative
 * to its folder); NULL with errors in d. Free with eng__fleet_free. */
eng__fleet *eng__fleet_load(const char *inventory, const char *image_dir,
                            eng__diags *d);
/* Database i's runbook file next to the inventory, or NULL for one the
 * image ships. Valid as long as f. */
const char *eng__fleet_runbook_file(const eng__fleet *f, size_t i);
/* `engine fleet render`: write every database's objects of f (read from
 * inventory) as multi-document YAML to out, or with out_dir one file per
 * database (OUT_DIR/NAME.yaml), then the next runs on standard error
 * unless d is quiet. ENG_EXIT_FAILED when a file cannot be written. */
int eng__fleet_render(const eng__fleet *f, const char *inventory,
                      const char *out_dir, FILE *out, const eng__diags *d);

#endif /* ENGINE_FLEET_H */
