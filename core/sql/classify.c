/* classify.c - what a text of SQL does, read with PostgreSQL's own parser.
 *
 * libpg_query (PostgreSQL 15's grammar) turns the text into its parse tree
 * as JSON; each statement is then classified by its node type (a table of
 * statement kinds below), and every function call anywhere in its tree
 * (FuncCall nodes: in the select list, FROM, WHERE, a CTE, an index
 * expression) is held to two tables: functions with known side effects
 * (pg_terminate_backend is disruptive, lo_unlink destructive, nextval a
 * write, ...) and functions known to only read (count, now, format,
 * pg_database_size, ...). A function in neither, DO, CALL, EXECUTE and
 * text that does not parse are unverified: the guards cannot tell what
 * they do. Statements that name a database (ALTER/DROP/CREATE DATABASE x,
 * REINDEX DATABASE x, GRANT ... ON DATABASE x) are attributed to it, not to
 * the database the text runs on. Pure: no I/O. */
#include "sql/sql.h"

#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HI(a, b) ((a) > (b) ? (a) : (b))

/* How deep the walk of one parse tree goes (jansson refuses deeper JSON
 * than 2048 levels anyway). */
#define WALK_DEPTH_MAX 4096

/* ---- functions -------------------------------------------------------- */

/* Functions with a side effect, by name (pg_catalog or unqualified). */
typedef struct fn_rule {
  const char *name;
  eng__sql_class cls;
  const char *why; /* non-NULL: also unverified, for this reason */
} fn_rule;

static const fn_rule fn_rules[] = {
    /* other sessions and the server */
    {"pg_terminate_backend", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_cancel_backend", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_reload_conf", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_rotate_logfile", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_rotate_logfile_old", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_promote", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_switch_wal", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_switch_xlog", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_wal_replay_pause", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_wal_replay_resume", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_xlog_replay_pause", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_xlog_replay_resume", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_log_backend_memory_contexts", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_start_backup", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_stop_backup", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_backup_start", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_backup_stop", ENG__SQL_DISRUPTIVE, NULL},
    /* session-level advisory locks: held until the session ends, and every
     * other holder of the key waits meanwhile. Transaction-level ones
     * (pg_advisory_xact_lock, pg_try_advisory_xact_lock and their _shared
     * forms) end with the transaction and are reads (read_fns); so are the
     * unlocks, which release only this session's own locks. */
    {"pg_advisory_lock", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_advisory_lock_shared", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_try_advisory_lock", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_try_advisory_lock_shared", ENG__SQL_DISRUPTIVE, NULL},
    /* the server's files: past the database (its configuration, keys,
     * other databases' files), held like a disruptive use */
    {"pg_read_file", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_read_binary_file", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_dir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_stat_file", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_logdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_waldir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_tmpdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_archive_statusdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_logicalsnapdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_logicalmapdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_ls_replslotdir", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_logdir_ls", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_file_read", ENG__SQL_DISRUPTIVE, NULL},
    {"pg_file_write", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_file_rename", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_file_unlink", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_file_sync", ENG__SQL_WRITE, NULL},
    /* large objects */
    {"lo_unlink", ENG__SQL_DESTRUCTIVE, NULL},
    {"lo_export", ENG__SQL_DESTRUCTIVE, NULL}, /* writes a server file */
    {"lo_import", ENG__SQL_WRITE, NULL},
    {"lo_put", ENG__SQL_WRITE, NULL},
    {"lo_from_bytea", ENG__SQL_WRITE, NULL},
    {"lo_create", ENG__SQL_WRITE, NULL},
    {"lo_creat", ENG__SQL_WRITE, NULL},
    {"lo_truncate", ENG__SQL_WRITE, NULL},
    {"lo_truncate64", ENG__SQL_WRITE, NULL},
    {"lowrite", ENG__SQL_WRITE, NULL},
    {"lo_open", ENG__SQL_WRITE, NULL},
    /* replication */
    {"pg_drop_replication_slot", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_replication_slot_advance", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_logical_slot_get_changes", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_logical_slot_get_binary_changes", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_create_physical_replication_slot", ENG__SQL_WRITE, NULL},
    {"pg_create_logical_replication_slot", ENG__SQL_WRITE, NULL},
    {"pg_copy_physical_replication_slot", ENG__SQL_WRITE, NULL},
    {"pg_copy_logical_replication_slot", ENG__SQL_WRITE, NULL},
    {"pg_replication_origin_create", ENG__SQL_WRITE, NULL},
    {"pg_replication_origin_drop", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_replication_origin_advance", ENG__SQL_DESTRUCTIVE, NULL},
    {"pg_replication_origin_session_setup", ENG__SQL_WRITE, NULL},
    {"pg_replication_origin_xact_setup", ENG__SQL_WRITE, NULL},
    {"pg_create_restore_point", ENG__SQL_WRITE, NULL},
    /* data, settings, statistics, messages */
    {"nextval", ENG__SQL_WRITE, NULL},
    {"setval", ENG__SQL_WRITE, NULL},
    {"pg_notify", ENG__SQL_WRITE, NULL},
    {"pg_import_system_collations", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_shared", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_single_table_counters", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_single_function_counters", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_slru", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_replication_slot", ENG__SQL_WRITE, NULL},
    {"pg_stat_reset_subscription_stats", ENG__SQL_WRITE, NULL},
    {"pg_stat_statements_reset", ENG__SQL_WRITE, NULL},
    /* SQL run elsewhere or from text: what it does is not in this text */
    {"dblink", ENG__SQL_WRITE, "dblink() runs SQL on another connection"},
    {"dblink_exec", ENG__SQL_WRITE, "dblink_exec() runs SQL on another connection"},
    {"dblink_send_query", ENG__SQL_WRITE, "dblink_send_query() runs SQL on another connection"},
    {"dblink_open", ENG__SQL_WRITE, "dblink_open() runs SQL on another connection"},
    {"dblink_fetch", ENG__SQL_WRITE, "dblink_fetch() runs SQL on another connection"},
    {"dblink_connect", ENG__SQL_WRITE, "dblink_connect() opens another connection"},
    {"dblink_connect_u", ENG__SQL_WRITE, "dblink_connect_u() opens another connection"},
    {"query_to_xml", ENG__SQL_WRITE, "query_to_xml() runs SQL given as text"},
    {"query_to_xml_and_xmlschema", ENG__SQL_WRITE, "query_to_xml_and_xmlschema() runs SQL given as text"},
    {"query_to_xmlschema", ENG__SQL_WRITE, "query_to_xmlschema() runs SQL given as text"},
    {"ts_stat", ENG__SQL_WRITE, "ts_stat() runs SQL given as text"},
    {NULL, ENG__SQL_READ, NULL}};

/* Functions known to only read (pg_catalog), and families of them by
 * prefix. Everything the shipped runbooks and the tests call is here. */
static const char *const read_fns[] = {
    /* aggregates and windows */
    "count", "sum", "avg", "min", "max", "bool_and", "bool_or", "every",
    "string_agg", "array_agg", "bit_and", "bit_or", "bit_xor", "stddev",
    "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
    "covar_pop", "covar_samp", "mode", "percentile_cont", "percentile_disc",
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
    "lag", "lead", "first_value", "last_value", "nth_value", "grouping",
    "range_agg", "range_intersect_agg", "xmlagg",
    /* conditionals, strings, numbers */
    "coalesce", "nullif", "greatest", "least", "length", "lower", "upper",
    "substr", "substring", "trim", "btrim", "ltrim", "rtrim", "replace",
    "concat", "concat_ws", "format", "left", "right", "position", "strpos",
    "split_part", "md5", "sha224", "sha256", "sha384", "sha512", "encode",
    "decode", "abs", "round", "ceil", "ceiling", "floor", "trunc", "mod",
    "power", "pow", "sqrt", "cbrt", "exp", "ln", "log", "log10", "pi",
    "sign", "div", "random", "setseed", "width_bucket", "gcd", "lcm",
    "scale", "min_scale", "trim_scale", "factorial", "degrees", "radians",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "octet_length",
    "bit_length", "char_length", "character_length", "chr", "ascii",
    "initcap", "repeat", "reverse", "lpad", "rpad", "translate",
    "starts_with", "overlay", "normalize", "is_normalized", "quote_ident",
    "quote_literal", "quote_nullable", "unistr", "string_to_array",
    "string_to_table", "unnest", "generate_series", "generate_subscripts",
    "cardinality", "num_nulls", "num_nonnulls", "similar_escape",
    "similar_to_escape", "like_escape", "hashtext", "crc32", "crc32c",
    "gen_random_uuid", "uuid_in", "isfinite", "numeric", "int2", "int4",
    "int8", "float4", "float8", "text", "bool", "varchar", "bpchar",
    "jsonb_path_query", "row", "textlen", "xmlparse", "xmlserialize",
    "xmlelement", "xmlforest", "xmlconcat", "xpath", "xpath_exists",
    "xml_is_well_formed", "convert", "convert_from", "convert_to",
    "get_byte", "set_byte", "get_bit", "set_bit", "bit_count",
    /* time */
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "timeofday", "extract", "date_part", "date_trunc", "date_bin", "age",
    "timezone", "justify_days", "justify_hours", "justify_interval",
    "overlaps", "isempty", "lower_inc", "upper_inc", "lower_inf",
    "upper_inf", "range_merge", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
    "mxid_age",
    /* the session, the server, the catalog */
    "current_database", "current_schema", "current_schemas", "current_user",
    "current_role", "session_user", "user", "version", "current_setting",
    "current_query", "pg_backend_pid", "pg_postmaster_start_time",
    "pg_conf_load_time", "inet_server_addr", "inet_server_port",
    "inet_client_addr", "inet_client_port", "pg_database_size",
    "pg_tablespace_size", "pg_indexes_size", "pg_typeof", "obj_description",
    "col_description", "shobj_description", "format_type",
    "pg_encoding_to_char", "pg_char_to_encoding", "pg_client_encoding",
    "pg_blocking_pids", "pg_safe_snapshot_blocking_pids",
    "pg_listening_channels", "pg_notification_queue_usage",
    "pg_trigger_depth", "pg_jit_available", "pg_tablespace_location",
    "pg_tablespace_databases", "pg_describe_object", "pg_identify_object",
    "pg_identify_object_as_address", "pg_options_to_table",
    "pg_lock_status", "pg_show_all_settings", "pg_settings_get_flags",
    "pg_current_logfile", "pg_export_snapshot", "pg_control_system",
    "pg_control_checkpoint", "pg_control_recovery", "pg_control_init",
    "pg_walfile_name", "pg_walfile_name_offset", "pg_xact_commit_timestamp",
    "pg_last_committed_xact", "pg_sequence_last_value", "currval",
    "lastval", "pg_collation_for", "pg_collation_actual_version",
    "pg_database_collation_actual_version", "pg_column_compression",
    "pg_logical_slot_peek_changes", "pg_logical_slot_peek_binary_changes",
    "pg_visible_in_snapshot", "pg_xact_status", "pg_available_extensions",
    "pg_available_extension_versions", "pg_extension_update_paths",
    "pg_cursor", "pg_prepared_statement", "pg_prepared_xact",
    "pg_timezone_names", "pg_timezone_abbrevs", "pg_config",
    "pg_hba_file_rules", "pg_ident_file_mappings", "pg_event_trigger_ddl_commands",
    "pg_event_trigger_dropped_objects", "pg_event_trigger_table_rewrite_oid",
    "pg_event_trigger_table_rewrite_reason", "pg_replication_origin_oid",
    "pg_replication_origin_progress", "pg_replication_origin_session_is_setup",
    "pg_replication_origin_session_progress", "pg_mcv_list_items",
    "pg_ndistinct_out", "pg_index_column_has_property",
    "pg_index_has_property", "pg_indexam_has_property", "pg_indexam_progress_phasename",
    "pg_filenode_relation", "pg_my_temp_schema", "pg_is_other_temp_schema",
    "pg_function_is_visible", "pg_type_is_visible", "pg_opclass_is_visible",
    "pg_operator_is_visible", "pg_collation_is_visible", "pg_conversion_is_visible",
    "pg_ts_config_is_visible", "pg_ts_dict_is_visible", "pg_ts_parser_is_visible",
    "pg_ts_template_is_visible", "pg_statistics_obj_is_visible",
    "pg_wal_lsn_diff", "pg_split_walfile_name", "pg_snapshot_xmin",
    "pg_snapshot_xmax", "pg_snapshot_xip", "pg_current_snapshot",
    "pg_current_xact_id", "pg_current_xact_id_if_assigned",
    "pg_get_wal_replay_pause_state", "pg_wal_replay_pause_state",
    "pg_nextoid", "pg_stat_statements", "pg_stat_statements_info",
    "lo_get", "loread", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64",
    "lo_close",
    /* advisory locks of the transaction, and unlocks (see fn_rules) */
    "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock", "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    /* set_config with is_local true (checked in call_fn) */
    "set_config",
    NULL};

static const char *const read_prefixes[] = {
    "pg_get_",      "pg_stat_get_", "pg_size_",   "pg_relation_", "pg_table_",
    "pg_total_",    "pg_column_",   "pg_is_",     "pg_has_",      "pg_last_",
    "pg_current_wal_", "pg_partition_", "pg_xact_", "has_",      "to_",
    "json",         "array_",       "string_",    "regexp_",      "make_",
    "date_",        "txid_",        "ts_",        "plainto_",     "phraseto_",
    "websearch_",   "setweight",    "row_to_",    "range_",       "int4range",
    "int8range",    "numrange",     "tsrange",    "tstzrange",    "daterange",
    "quote_",       "pg_stat_statements", NULL};

static bool known_read(const char *name) {
  for (size_t i = 0; read_fns[i]; i++)
    if (!strcmp(read_fns[i], name)) return true;
  for (size_t i = 0; read_prefixes[i]; i++)
    if (!strncmp(read_prefixes[i], name, strlen(read_prefixes[i]))) {
      /* ts_stat runs SQL text; pg_stat_reset* writes (fn_rules first) */
      return true;
    }
  return false;
}

static const fn_rule *fn_rule_of(const char *name) {
  for (const fn_rule *r = fn_rules; r->name; r++)
    if (!strcmp(r->name, name)) return r;
  return NULL;
}

/* ---- the walk ------------------------------------------------------- */

typedef struct stmt_acc {
  eng__sql_class verb; /* the statement itself */
  const char *verb_what;
  /* PostgreSQL refuses it inside a READ ONLY transaction, and it writes
   * data, objects or settings */
  bool writes;
  bool no_txn;   /* cannot run inside a transaction block */
  bool names_db; /* acts on the databases it names, not on this one */
  eng__sql_class fn; /* the functions it calls */
  char fn_what[96];
  bool unknown; /* parts not verified: may write anything */
  char unknown_what[96];
} stmt_acc;

typedef struct cx {
  eng__sql_info *out;
  stmt_acc *s;
  bool depth_hit;
} cx;

static void unverified(cx *c, const char *fmt, const char *arg) {
  if (c->out->unverified) return;
  c->out->unverified = eng__asprintf(fmt, arg ? arg : "");
}

static void set_verb(stmt_acc *s, eng__sql_class cls, const char *what) {
  if (!s->verb_what || cls > s->verb) {
    s->verb = cls;
    s->verb_what = what;
  }
}

static void set_unknown(cx *c, const char *what) {
  if (!c->s->unknown) snprintf(c->s->unknown_what, sizeof c->s->unknown_what, "%s", what);
  c->s->unknown = true;
}

static void add_db(cx *c, const char *name, eng__sql_class cls,
                   eng__sql_class cls_ro, const char *what) {
  if (!name || !*name) return;
  eng__sql_info *o = c->out;
  for (size_t i = 0; i < o->n_dbs; i++) {
    if (strcmp(o->dbs[i].name, name)) continue;
    if (cls > o->dbs[i].cls) {
      o->dbs[i].cls = cls;
      free(o->dbs[i].what);
      o->dbs[i].what = eng__xstrdup(what);
    }
    o->dbs[i].cls_ro = HI(o->dbs[i].cls_ro, cls_ro);
    return;
  }
  o->dbs = eng__xrealloc(o->dbs, (o->n_dbs + 1) * sizeof *o->dbs);
  o->dbs[o->n_dbs].name = eng__xstrdup(name);
  o->dbs[o->n_dbs].cls = cls;
  o->dbs[o->n_dbs].cls_ro = cls_ro;
  o->dbs[o->n_dbs].what = eng__xstrdup(what);
  o->n_dbs++;
}

/* A database named by the statement: its class, and inside a READ ONLY
 * transaction block nothing (every such statement is refused there). */
static void named_db(cx *c, const char *name, eng__sql_class cls,
                     const char *what) {
  c->s->names_db = true;
  add_db(c, name, cls, ENG__SQL_READ, what);
}

static const char *str_of(const json_t *node) { /* {"String": {"sval": x}} */
  return json_string_value(
      json_object_get(json_object_get(node, "String"), "sval"));
}

static const char *get_s(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* A DefElem's boolean: absent arg is true; "false"/"off"/"0"/"no" false. */
static bool defelem_true(const json_t *de) {
  const json_t *arg = json_object_get(de, "arg");
  if (!arg) return true;
  const char *s = str_of(arg);
  if (s)
    return !(!strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0") ||
             !strcmp(s, "no"));
  const json_t *i = json_object_get(arg, "Integer");
  if (i) return json_integer_value(json_object_get(i, "ival")) != 0;
  const json_t *b = json_object_get(arg, "Boolean");
  if (b) return json_is_true(json_object_get(b, "boolval"));
  return true;
}

/* Is the option list's `name` set (DefElem list)? */
static bool option_on(const json_t *opts, const char *name) {
  size_t i;
  const json_t *o;
  json_array_foreach(opts, i, o) {
    const json_t *de = json_object_get(o, "DefElem");
    const char *n = get_s(de, "defname");
    if (n && !strcmp(n, name)) return defelem_true(de);
  }
  return false;
}

/* A literal true: A_Const boolean true or a string PostgreSQL reads as
 * true, possibly cast. Anything else (false, an expression) is not. */
static bool literal_true(const json_t *e) {
  const json_t *tc = json_object_get(e, "TypeCast");
  if (tc) e = json_object_get(tc, "arg");
  const json_t *k = json_object_get(e, "A_Const");
  if (!k) return false;
  const json_t *b = json_object_get(k, "boolval");
  if (b) return json_is_true(json_object_get(b, "boolval"));
  const char *s = json_string_value(json_object_get(json_object_get(k, "sval"), "sval"));
  return s && (!strcmp(s, "true") || !strcmp(s, "t") || !strcmp(s, "on") ||
               !strcmp(s, "yes") || !strcmp(s, "y") || !strcmp(s, "1"));
}

static void call_fn(cx *c, const json_t *fc) {
  const json_t *names = json_object_get(fc, "funcname");
  size_t n = json_array_size(names);
  const char *fname = n ? str_of(json_array_get(names, n - 1)) : NULL;
  const char *schema = n >= 2 ? str_of(json_array_get(names, n - 2)) : NULL;
  const char *form = get_s(fc, "funcformat");
  if (!fname) return;
  /* EXTRACT(...), x AT TIME ZONE y, TRIM(...): grammar mapped to built-ins */
  if (form && !strcmp(form, "COERCE_SQL_SYNTAX")) return;
  char shown[96];
  if ((schema && strcmp(schema, "pg_catalog")) || n > 2) {
    snprintf(shown, sizeof shown, "%s.%s()", schema ? schema : "?", fname);
    unverified(c, "calls %s, a function the guards do not know", shown);
    set_unknown(c, shown);
    return;
  }
  snprintf(shown, sizeof shown, "%s()", fname);
  if (!strcmp(fname, "set_config")) {
    /* set_config(name, value, is_local): session-wide unless is_local is a
     * literal true (a pooled connection carries it on to other clients) */
    if (!literal_true(json_array_get(json_object_get(fc, "args"), 2))) {
      if (ENG__SQL_WRITE > c->s->fn || !c->s->fn_what[0]) {
        c->s->fn = HI(c->s->fn, ENG__SQL_WRITE);
        snprintf(c->s->fn_what, sizeof c->s->fn_what, "set_config(..., false)");
      }
    }
    return;
  }
  const fn_rule *r = fn_rule_of(fname);
  if (r) {
    if (r->cls > c->s->fn || !c->s->fn_what[0]) {
      c->s->fn = HI(c->s->fn, r->cls);
      snprintf(c->s->fn_what, sizeof c->s->fn_what, "%s", shown);
    }
    if (r->why) {
      unverified(c, "%s", r->why);
      set_unknown(c, shown);
    }
    return;
  }
  if (known_read(fname)) return;
  unverified(c, "calls %s, a function the guards do not know", shown);
  set_unknown(c, shown);
}

/* Subtrees that are stored, not run now: a view's query, a function's
 * body, a rule, a trigger, a prepared statement. */
static bool stored_not_run(const char *key) {
  static const char *const keys[] = {
      "ViewStmt", "CreateFunctionStmt", "CreateTrigStmt", "RuleStmt",
      "CreateEventTrigStmt", "PrepareStmt", "CreatePolicyStmt",
      "AlterPolicyStmt", "CreateDomainStmt", "DoStmt", NULL};
  for (size_t i = 0; keys[i]; i++)
    if (!strcmp(keys[i], key)) return true;
  return false;
}

static void walk(cx *c, const json_t *n, int depth) {
  if (depth > WALK_DEPTH_MAX) {
    if (!c->depth_hit) unverified(c, "%sthe SQL is nested too deeply to check", NULL);
    c->depth_hit = true;
    set_unknown(c, "deeply nested SQL");
    return;
  }
  if (json_is_array(n)) {
    size_t i;
    const json_t *v;
    json_array_foreach(n, i, v) walk(c, v, depth + 1);
    return;
  }
  if (!json_is_object(n)) return;
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)n, key, v) {
    if (!strcmp(key, "FuncCall")) {
      call_fn(c, v);
    } else if (!strcmp(key, "InsertStmt")) {
      set_verb(c->s, ENG__SQL_WRITE, "INSERT");
      c->s->writes = true;
    } else if (!strcmp(key, "UpdateStmt")) {
      set_verb(c->s, ENG__SQL_WRITE, "UPDATE");
      c->s->writes = true;
    } else if (!strcmp(key, "DeleteStmt")) {
      set_verb(c->s, ENG__SQL_DESTRUCTIVE, "DELETE");
      c->s->writes = true;
    } else if (!strcmp(key, "MergeStmt")) {
      set_verb(c->s, ENG__SQL_DESTRUCTIVE, "MERGE");
      c->s->writes = true;
    } else if (stored_not_run(key)) {
      continue;
    }
    walk(c, v, depth + 1);
  }
}

/* ---- statements ------------------------------------------------------ */

static const char *obj_db(const json_t *body, const char *typekey) {
  const char *t = get_s(body, typekey);
  return t && !strcmp(t, "OBJECT_DATABASE") ? str_of(json_object_get(body, "object"))
                                             : NULL;
}

static void statement(cx *c, const char *type, const json_t *body);

/* Classify one statement node {"Type": {...}}: its verb, then the walk of
 * its tree for functions and data-modifying CTEs. */
static void statement_node(cx *c, const json_t *node) {
  const char *type;
  const json_t *body;
  json_object_foreach((json_t *)node, type, body) {
    statement(c, type, body);
    return;
  }
}

#define IS(t) (!strcmp(type, t))

/* One family of statements each: 1 handled (walk its tree), 0 handled (do
 * not), -1 not of this family. */
/* Reading, writing rows, transactions, sessions. */
static int stmt_session(cx *c, const char *type, const json_t *body) {
  stmt_acc *s = c->s;
  bool walk_it = true;
  if (IS("SelectStmt")) {
    set_verb(s, ENG__SQL_READ, "SELECT");
    if (json_object_get(body, "intoClause")) {
      set_verb(s, ENG__SQL_WRITE, "SELECT INTO");
      s->writes = true;
    }
  } else if (IS("InsertStmt") || IS("UpdateStmt") || IS("DeleteStmt") ||
             IS("MergeStmt")) {
    /* the walk sets them (also inside CTEs) */
  } else if (IS("TransactionStmt") && get_s(body, "kind") &&
             strstr(get_s(body, "kind"), "PREPARE")) {
    /* two-phase commit: a prepared transaction keeps its locks until
     * someone ends it; ending another's commits or discards its work */
    const char *k = get_s(body, "kind");
    if (!strcmp(k, "TRANS_STMT_PREPARE")) {
      set_verb(s, ENG__SQL_DISRUPTIVE, "PREPARE TRANSACTION");
    } else {
      bool commit = !strcmp(k, "TRANS_STMT_COMMIT_PREPARED");
      set_verb(s, commit ? ENG__SQL_WRITE : ENG__SQL_DESTRUCTIVE,
               commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED");
      s->no_txn = true;
    }
  } else if (IS("VariableShowStmt") || IS("TransactionStmt") ||
             IS("ListenStmt") || IS("UnlistenStmt") || IS("FetchStmt") ||
             IS("ClosePortalStmt") || IS("DeallocateStmt") ||
             IS("DiscardStmt") || IS("ConstraintsSetStmt") ||
             IS("VariableSetStmt") || IS("DeclareCursorStmt")) {
    set_verb(s, ENG__SQL_READ, IS("VariableShowStmt") ? "SHOW"
                               : IS("VariableSetStmt") ? "SET"
                               : IS("TransactionStmt") ? "transaction control"
                                                       : "SELECT");
  } else if (IS("PrepareStmt")) {
    set_verb(s, ENG__SQL_READ, "PREPARE");
    walk_it = false;
  } else if (IS("ExplainStmt")) {
    set_verb(s, ENG__SQL_READ, "EXPLAIN");
    walk_it = false;
    /* EXPLAIN ANALYZE runs its statement */
    if (option_on(json_object_get(body, "options"), "analyze"))
      statement_node(c, json_object_get(body, "query"));
  } else {
    return -1;
  }
  return walk_it;
}

/* Maintenance and the statements that lock or rewrite. */
static int stmt_upkeep(cx *c, const char *type, const json_t *body) {
  stmt_acc *s = c->s;
  if (IS("VacuumStmt")) {
    bool vacuum = json_is_true(json_object_get(body, "is_vacuumcmd"));
    const json_t *opts = json_object_get(body, "options");
    if (vacuum && option_on(opts, "full")) {
      set_verb(s, ENG__SQL_DISRUPTIVE, "VACUUM FULL");
    } else {
      set_verb(s, ENG__SQL_MAINTENANCE, vacuum ? "VACUUM" : "ANALYZE");
    }
    if (vacuum) s->no_txn = true;
  } else if (IS("CheckPointStmt")) {
    set_verb(s, ENG__SQL_MAINTENANCE, "CHECKPOINT");
  } else if (IS("ReindexStmt")) {
    const char *kind = get_s(body, "kind");
    bool conc = option_on(json_object_get(body, "params"), "concurrently");
    bool whole = kind && (!strcmp(kind, "REINDEX_OBJECT_DATABASE") ||
                          !strcmp(kind, "REINDEX_OBJECT_SYSTEM"));
    eng__sql_class cls = conc ? ENG__SQL_MAINTENANCE : ENG__SQL_DISRUPTIVE;
    const char *what = conc ? (whole ? "REINDEX DATABASE ... CONCURRENTLY"
                                     : "REINDEX ... CONCURRENTLY")
                            : (whole ? "REINDEX DATABASE" : "REINDEX");
    set_verb(s, cls, what);
    if (conc || whole) s->no_txn = true;
    const char *name = get_s(body, "name");
    if (whole && name) named_db(c, name, cls, what);
  } else if (IS("ClusterStmt")) {
    set_verb(s, ENG__SQL_DISRUPTIVE, "CLUSTER");
    if (!json_object_get(body, "relation")) s->no_txn = true;
  } else if (IS("LockStmt")) {
    set_verb(s, ENG__SQL_DISRUPTIVE, "LOCK");
  } else if (IS("IndexStmt")) {
    if (json_is_true(json_object_get(body, "concurrent"))) {
      set_verb(s, ENG__SQL_MAINTENANCE, "CREATE INDEX CONCURRENTLY");
      s->no_txn = true;
    } else {
      set_verb(s, ENG__SQL_WRITE, "CREATE INDEX");
      s->writes = true;
    }
  } else if (IS("RefreshMatViewStmt")) {
    if (json_is_true(json_object_get(body, "concurrent"))) {
      set_verb(s, ENG__SQL_MAINTENANCE, "REFRESH MATERIALIZED VIEW CONCURRENTLY");
    } else {
      set_verb(s, ENG__SQL_DISRUPTIVE, "REFRESH MATERIALIZED VIEW");
    }
    s->writes = true;
  } else if (IS("AlterSystemStmt")) {
    set_verb(s, ENG__SQL_DISRUPTIVE, "ALTER SYSTEM");
    s->writes = true;
    s->no_txn = true;
  } else {
    return -1;
  }
  return 1;
}

/* Code the guards do not read, notifications, COPY. */
static int stmt_code(cx *c, const char *type, const json_t *body) {
  stmt_acc *s = c->s;
  bool walk_it = true;
  const json_t *node = NULL;
  if (IS("DoStmt")) {
    set_verb(s, ENG__SQL_READ, "DO");
    unverified(c, "%sa DO block runs code the guards do not read", NULL);
    set_unknown(c, "DO");
  } else if (IS("CallStmt")) {
    const json_t *names = json_object_get(json_object_get(body, "funccall"), "funcname");
    const char *p = str_of(json_array_get(names, json_array_size(names) - 1));
    set_verb(s, ENG__SQL_READ, "CALL");
    unverified(c, "CALL %s(): a procedure the guards do not read", p ? p : "?");
    set_unknown(c, "CALL");
    walk_it = false; /* its arguments are all the walk would see */
    node = json_object_get(json_object_get(body, "funccall"), "args");
    if (node) walk(c, node, 1);
  } else if (IS("ExecuteStmt")) {
    set_verb(s, ENG__SQL_READ, "EXECUTE");
    unverified(c, "%sEXECUTE runs a prepared statement the guards do not see", NULL);
    set_unknown(c, "EXECUTE");
  } else if (IS("LoadStmt")) {
    set_verb(s, ENG__SQL_READ, "LOAD");
    unverified(c, "%sLOAD runs a library's code in the server", NULL);
    set_unknown(c, "LOAD");
  } else if (IS("NotifyStmt")) {
    set_verb(s, ENG__SQL_WRITE, "NOTIFY"); /* listeners act on it */
  } else if (IS("CopyStmt")) {
    bool from = json_is_true(json_object_get(body, "is_from"));
    bool program = json_is_true(json_object_get(body, "is_program"));
    bool file = get_s(body, "filename") != NULL;
    if (program) {
      set_verb(s, ENG__SQL_DESTRUCTIVE, from ? "COPY FROM PROGRAM" : "COPY TO PROGRAM");
      unverified(c, "%sCOPY ... PROGRAM runs a command on the database server", NULL);
      set_unknown(c, "COPY ... PROGRAM");
    } else if (from) {
      set_verb(s, ENG__SQL_WRITE, "COPY FROM");
      s->writes = true;
    } else if (file) {
      set_verb(s, ENG__SQL_DESTRUCTIVE, "COPY TO a server file");
    } else {
      set_verb(s, ENG__SQL_READ, "COPY TO STDOUT");
    }
  } else {
    return -1;
  }
  return walk_it;
}

/* Databases, owners, privileges. */
static int stmt_databases(cx *c, const char *type, const json_t *body) {
  stmt_acc *s = c->s;
  if (IS("CreatedbStmt")) {
    const char *name = get_s(body, "dbname");
    set_verb(s, ENG__SQL_CREATES, "CREATE DATABASE");
    s->writes = s->no_txn = true;
    named_db(c, name, ENG__SQL_CREATES, "CREATE DATABASE");
    /* TEMPLATE y is copied, not changed: a read of y */
    size_t i;
    const json_t *o;
    json_array_foreach(json_object_get(body, "options"), i, o) {
      const json_t *de = json_object_get(o, "DefElem");
      const char *dn = get_s(de, "defname");
      if (dn && !strcmp(dn, "template"))
        add_db(c, str_of(json_object_get(de, "arg")), ENG__SQL_READ,
               ENG__SQL_READ, "CREATE DATABASE ... TEMPLATE (copied)");
    }
  } else if (IS("DropdbStmt")) {
    set_verb(s, ENG__SQL_DESTRUCTIVE, "DROP DATABASE");
    s->writes = s->no_txn = true;
    named_db(c, get_s(body, "dbname"), ENG__SQL_DESTRUCTIVE, "DROP DATABASE");
  } else if (IS("AlterDatabaseStmt")) {
    /* CONNECTION LIMIT, ALLOW_CONNECTIONS, IS_TEMPLATE, SET TABLESPACE:
     * who can connect, or a move under an exclusive lock */
    bool ts = option_on(json_object_get(body, "options"), "tablespace");
    const char *what = ts ? "ALTER DATABASE ... SET TABLESPACE" : "ALTER DATABASE ... WITH";
    set_verb(s, ENG__SQL_DISRUPTIVE, what);
    s->writes = true;
    if (ts) s->no_txn = true;
    named_db(c, get_s(body, "dbname"), ENG__SQL_DISRUPTIVE, what);
  } else if (IS("AlterDatabaseSetStmt") || IS("AlterDatabaseRefreshCollStmt")) {
    const char *what = IS("AlterDatabaseSetStmt") ? "ALTER DATABASE ... SET"
                                                  : "ALTER DATABASE ... REFRESH COLLATION VERSION";
    set_verb(s, ENG__SQL_WRITE, what);
    s->writes = true;
    named_db(c, get_s(body, "dbname"), ENG__SQL_WRITE, what);
  } else if (IS("RenameStmt")) {
    const char *rt = get_s(body, "renameType");
    bool db = rt && !strcmp(rt, "OBJECT_DATABASE");
    set_verb(s, ENG__SQL_DESTRUCTIVE, db ? "ALTER DATABASE ... RENAME" : "RENAME");
    s->writes = true;
    if (db)
      named_db(c, get_s(body, "subname"), ENG__SQL_DESTRUCTIVE,
               "ALTER DATABASE ... RENAME");
  } else if (IS("AlterOwnerStmt") || IS("CommentStmt") || IS("SecLabelStmt")) {
    const char *what = IS("AlterOwnerStmt") ? "ALTER ... OWNER"
                       : IS("CommentStmt")  ? "COMMENT"
                                            : "SECURITY LABEL";
    set_verb(s, ENG__SQL_WRITE, what);
    s->writes = true;
    const char *db = obj_db(body, IS("AlterOwnerStmt") ? "objectType" : "objtype");
    if (db) named_db(c, db, ENG__SQL_WRITE, what);
  } else if (IS("GrantStmt")) {
    set_verb(s, ENG__SQL_WRITE, json_is_true(json_object_get(body, "is_grant"))
                                    ? "GRANT" : "REVOKE");
    s->writes = true;
    const char *ot = get_s(body, "objtype");
    if (ot && !strcmp(ot, "OBJECT_DATABASE")) {
      size_t i;
      const json_t *o;
      json_array_foreach(json_object_get(body, "objects"), i, o)
          named_db(c, str_of(o), ENG__SQL_WRITE, s->verb_what);
    }
  } else {
    return -1;
  }
  return 1;
}

/* Dropping and altering objects; every other statement. */
static int stmt_objects(cx *c, const char *type, const json_t *body) {
  stmt_acc *s = c->s;
  bool walk_it = true;
  if (IS("TruncateStmt") || IS("DropStmt") || IS("DropRoleStmt") ||
             IS("DropOwnedStmt") || IS("DropTableSpaceStmt") ||
             IS("DropSubscriptionStmt") || IS("DropUserMappingStmt")) {
    set_verb(s, ENG__SQL_DESTRUCTIVE, IS("TruncateStmt") ? "TRUNCATE"
                                      : IS("DropOwnedStmt") ? "DROP OWNED"
                                                            : "DROP");
    s->writes = true;
    if (IS("DropTableSpaceStmt")) s->no_txn = true;
  } else if (IS("AlterTableStmt")) {
    /* dropping a column or a constraint, or changing a type, loses data */
    const char *what = "ALTER TABLE";
    eng__sql_class cls = ENG__SQL_WRITE;
    size_t i;
    const json_t *cmd;
    json_array_foreach(json_object_get(body, "cmds"), i, cmd) {
      const char *st = get_s(json_object_get(cmd, "AlterTableCmd"), "subtype");
      if (st && (!strncmp(st, "AT_Drop", 7) || !strcmp(st, "AT_AlterColumnType"))) {
        cls = ENG__SQL_DESTRUCTIVE;
        what = "ALTER TABLE ... DROP";
      }
    }
    set_verb(s, cls, what);
    s->writes = true;
  } else if (IS("CreateTableSpaceStmt")) {
    set_verb(s, ENG__SQL_WRITE, "CREATE TABLESPACE");
    s->writes = s->no_txn = true;
  } else {
    /* every other statement defines or changes objects, roles or settings:
     * CREATE TABLE, CREATE TABLE AS, ALTER ..., CREATE EXTENSION, ... */
    set_verb(s, ENG__SQL_WRITE, "a statement that changes objects");
    s->writes = true;
    if (stored_not_run(type)) walk_it = false;
  }
  return walk_it;
}

#undef IS

static void statement(cx *c, const char *type, const json_t *body) {
  static int (*const family[])(cx *, const char *, const json_t *) = {
      stmt_session, stmt_upkeep, stmt_code, stmt_databases, stmt_objects};
  int walk_it = -1;
  for (size_t k = 0; k < sizeof family / sizeof *family && walk_it < 0; k++)
    walk_it = family[k](c, type, body);
  if (walk_it > 0) {
    json_t *wrap = json_object();
    json_object_set(wrap, type, (json_t *)body);
    walk(c, wrap, 0);
    json_decref(wrap);
  }
}

/* ---- the whole text ------------------------------------------------- */

static eng__sql_class stmt_cls(const stmt_acc *s, bool ro, bool here) {
  eng__sql_class verb = s->verb;
  if (here && s->names_db) verb = ENG__SQL_READ;
  /* refused inside a READ ONLY transaction block: nothing happens */
  if (ro && (s->writes || s->no_txn)) verb = ENG__SQL_READ;
  eng__sql_class c = HI(verb, s->fn);
  if (!ro && s->unknown) c = HI(c, ENG__SQL_WRITE);
  return c;
}

/* What stands behind class cls in s, for messages. */
static const char *stmt_what(const stmt_acc *s, eng__sql_class cls) {
  if (s->verb_what && s->verb == cls) return s->verb_what;
  if (s->fn_what[0] && s->fn == cls) return s->fn_what;
  if (s->unknown) return s->unknown_what;
  return s->verb_what ? s->verb_what : "";
}

static void set_what(char **dst, const char *what) {
  free(*dst);
  *dst = eng__xstrdup(what);
}

int eng__sql_classify(const char *sql, eng__sql_info *out) {
  memset(out, 0, sizeof *out);
  out->what = eng__xstrdup("");
  out->what_ro = eng__xstrdup("");
  out->here_what = eng__xstrdup("");
  out->here_ro_what = eng__xstrdup("");
  if (!sql) sql = "";
  PgQueryParseResult pr = pg_query_parse(sql);
  json_t *tree = NULL;
  json_error_t jerr;
  if (!pr.error) tree = json_loads(pr.parse_tree, 0, &jerr);
  if (pr.error || !tree) {
    /* jansson refuses a tree nested too deeply or holding bytes that are
     * not UTF-8 (names of such bytes): not read, so not verified */
    char *why = pr.error ? eng__asprintf("the SQL does not parse as PostgreSQL %s "
                                         "(%s, at character %d)", PG_MAJORVERSION,
                                         pr.error->message ? pr.error->message : "error",
                                         pr.error->cursorpos)
                         : eng__asprintf("the SQL's parse tree cannot be read (%s)",
                                         jerr.text);
    for (char *x = why; *x; x++) /* it quotes the text: keep it ASCII */
      if ((unsigned char)*x >= 0x80 || (unsigned char)*x < 0x20) *x = '?';
    out->unverified = why;
    out->cls = ENG__SQL_WRITE; /* unknown text may write anything */
    out->here = ENG__SQL_WRITE;
    set_what(&out->what, "SQL that does not parse");
    set_what(&out->here_what, "SQL that does not parse");
    pg_query_free_parse_result(pr);
    return 1;
  }
  pg_query_free_parse_result(pr);
  const json_t *stmts = json_object_get(tree, "stmts");
  size_t n = json_array_size(stmts);
  size_t sql_len = strlen(sql);
  out->stmts = n ? eng__xcalloc(n, sizeof *out->stmts) : NULL;
  for (size_t i = 0; i < n; i++) {
    const json_t *raw = json_array_get(stmts, i);
    stmt_acc acc = {0};
    cx c = {out, &acc, false};
    statement_node(&c, json_object_get(raw, "stmt"));
    json_int_t loc = json_integer_value(json_object_get(raw, "stmt_location"));
    json_int_t len = json_integer_value(json_object_get(raw, "stmt_len"));
    if (loc < 0 || (size_t)loc > sql_len) loc = 0;
    if (len <= 0 || (size_t)(loc + len) > sql_len) len = (json_int_t)(sql_len - (size_t)loc);
    while (len > 0 && strchr(" \t\r\n", sql[loc])) loc++, len--; /* after a ';' */
    while (len > 0 && strchr(" \t\r\n", sql[loc + len - 1])) len--;
    eng__sql_stmt *st = &out->stmts[out->n_stmts++];
    st->off = (size_t)loc;
    st->len = (size_t)len;
    st->cls = stmt_cls(&acc, false, false);
    st->no_txn = acc.no_txn;
    st->what = eng__xstrdup(stmt_what(&acc, st->cls));
    if (st->cls > out->cls || (!out->what[0] && st->cls > ENG__SQL_READ))
      set_what(&out->what, st->what);
    out->cls = HI(out->cls, st->cls);
    eng__sql_class ro = stmt_cls(&acc, true, false);
    if (ro > out->cls_ro || (!out->what_ro[0] && ro > ENG__SQL_READ))
      set_what(&out->what_ro, stmt_what(&acc, ro));
    out->cls_ro = HI(out->cls_ro, ro);
    eng__sql_class h = stmt_cls(&acc, false, true);
    eng__sql_class hro = stmt_cls(&acc, true, true);
    if (h > out->here || (!out->here_what[0] && h > ENG__SQL_READ))
      set_what(&out->here_what, stmt_what(&acc, h));
    if (hro > out->here_ro || (!out->here_ro_what[0] && hro > ENG__SQL_READ))
      set_what(&out->here_ro_what, stmt_what(&acc, hro));
    out->here = HI(out->here, h);
    out->here_ro = HI(out->here_ro, hro);
    if (acc.no_txn) {
      out->n_no_txn++;
      if (!out->no_txn_what) out->no_txn_what = eng__xstrdup(acc.verb_what);
    }
    if (acc.writes && !out->writes_what)
      out->writes_what = eng__xstrdup(acc.verb_what);
  }
  json_decref(tree);
  return out->unverified ? 1 : 0;
}

void eng__sql_info_free(eng__sql_info *info) {
  for (size_t i = 0; i < info->n_dbs; i++) {
    free(info->dbs[i].name);
    free(info->dbs[i].what);
  }
  for (size_t i = 0; i < info->n_stmts; i++) free(info->stmts[i].what);
  free(info->dbs);
  free(info->stmts);
  free(info->what);
  free(info->what_ro);
  free(info->here_what);
  free(info->here_ro_what);
  free(info->unverified);
  free(info->no_txn_what);
  free(info->writes_what);
  memset(info, 0, sizeof *info);
}

const char *eng__sql_class_name(eng__sql_class c) {
  static const char *const names[] = {"read", "maintenance", "disruptive",
                                      "creates", "write", "destructive"};
  return (unsigned)c < sizeof names / sizeof *names ? names[c] : "destructive";
}

eng_side_effect eng__sql_side(eng__sql_class c) {
  switch (c) {
  case ENG__SQL_READ: return ENG_SIDE_READ_ONLY;
  case ENG__SQL_MAINTENANCE: return ENG_SIDE_MAINTENANCE;
  case ENG__SQL_DISRUPTIVE: return ENG_SIDE_DISRUPTIVE;
  case ENG__SQL_CREATES: return ENG_SIDE_CREATES;
  default: return ENG_SIDE_DESTRUCTIVE;
  }
}

json_t *eng__sql_info_json(const eng__sql_info *info) {
  json_t *dbs = json_array();
  for (size_t i = 0; i < info->n_dbs; i++)
    json_array_append_new(
        dbs, json_pack("{s:s, s:s, s:s, s:i, s:i, s:s}", "name", info->dbs[i].name,
                       "class", eng__sql_class_name(info->dbs[i].cls),
                       "class_read_only", eng__sql_class_name(info->dbs[i].cls_ro),
                       "side", (int)eng__sql_side(info->dbs[i].cls),
                       "side_read_only", (int)eng__sql_side(info->dbs[i].cls_ro),
                       "what", info->dbs[i].what ? info->dbs[i].what : ""));
  json_t *stmts = json_array();
  for (size_t i = 0; i < info->n_stmts; i++)
    json_array_append_new(
        stmts, json_pack("{s:I, s:I, s:s, s:b, s:s}", "offset",
                         (json_int_t)info->stmts[i].off, "length",
                         (json_int_t)info->stmts[i].len, "class",
                         eng__sql_class_name(info->stmts[i].cls),
                         "no_transaction", info->stmts[i].no_txn, "what",
                         info->stmts[i].what));
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:s, s:s?, s:o, s:o, s:I, s:s?, s:s?}",
      "class", eng__sql_class_name(info->cls), "class_read_only",
      eng__sql_class_name(info->cls_ro), "here", eng__sql_class_name(info->here),
      "here_read_only", eng__sql_class_name(info->here_ro), "side",
      (int)eng__sql_side(info->cls), "side_read_only",
      (int)eng__sql_side(info->cls_ro), "side_here", (int)eng__sql_side(info->here),
      "side_here_read_only", (int)eng__sql_side(info->here_ro), "what",
      info->what ? info->what : "", "what_read_only",
      info->what_ro ? info->what_ro : "", "unverified", info->unverified, "databases",
      dbs, "statements", stmts, "no_transaction", (json_int_t)info->n_no_txn,
      "no_transaction_what", info->no_txn_what, "writes_what", info->writes_what);
}

json_t *eng__sql_classify_json(const char *sql) {
  eng__sql_info in;
  eng__sql_classify(sql, &in);
  json_t *j = eng__sql_info_json(&in);
  eng__sql_info_free(&in);
  return j;
}
