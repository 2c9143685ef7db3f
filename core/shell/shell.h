/*
 * shell/shell.h - the shell analyser (analyser.c): what a command line
 * does to guarded targets (databases, volumes, containers, paths), read
 * with a shell's rules: quoting, pipelines, wrappers, container exec.
 * The guard policy (run/policy.c) decides on its findings. Above base/.
 */
#ifndef ENGINE_SHELL_H
#define ENGINE_SHELL_H

#include "base/base.h"

/* ---- analyser.c ------------------------------------------------------- */

typedef struct eng__cmd_finding {
  char *tool;           /* "psql", "docker volume rm" */
  eng_target kind;      /* DATABASE, VOLUME, CONTAINER, FILE (a path) */
  char *target;         /* the name or path; NULL when it is not known */
  eng_side_effect side; /* READ_ONLY, CREATES, DESTRUCTIVE, DISRUPTIVE */
  char *what;           /* what was understood ("pg_restore --clean") */
} eng__cmd_finding;

typedef struct eng__cmd_analysis {
  eng__cmd_finding *f;
  size_t n;
  char *unverified; /* why part of the line could not be understood */
} eng__cmd_analysis;

/* Analyse a shell command line; env holds the step's NAME=VALUE (NULL-
 * terminated, may be NULL; ENGINE_CWD=DIR sets the working directory).
 * Returns 1 when part of it is unverified. Free with the function below. */
int eng__cmd_analyse(const char *line, const char *const *env,
                     eng__cmd_analysis *out);
/* The same with the environment as "NAME=VALUE\n..." text. */
int eng__cmd_analyse_env_text(const char *line, const char *env_text,
                              eng__cmd_analysis *out);
void eng__cmd_analysis_free(eng__cmd_analysis *a);

#endif /* ENGINE_SHELL_H */
