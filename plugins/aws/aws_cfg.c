/*
 * aws_cfg.c - where to talk to and as whom.
 *
 * Precedence, as the AWS CLI has it: action parameters, then the
 * environment (AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, AWS_REGION,
 * AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN), then the profile (AWS_PROFILE, default "default") of
 * the shared files (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
 * AWS_CONFIG_FILE or ~/.aws/config). The shared files are small local files
 * read once per call.
 */
#include "aws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

/* Value of `key` in section [section] (or [profile section] when
 * profile_prefix) of an INI file; NULL when absent. Caller frees. */
static char *ini_get(const char *path, const char *section, int profile_prefix,
                     const char *key) {
  FILE *f = path ? fopen(path, "r") : NULL;
  if (!f) return NULL;
  char line[1024], *val = NULL;
  int in = 0;
  while (fgets(line, sizeof line, f)) {
    char *s = trim(line);
    if (*s == '#' || *s == ';' || !*s) continue;
    if (*s == '[') {
      char *e = strchr(s, ']');
      if (!e) continue;
      *e = '\0';
      char *name = trim(s + 1);
      if (profile_prefix && strncmp(name, "profile ", 8) == 0)
        name = trim(name + 8);
      in = strcmp(name, section) == 0;
      continue;
    }
    if (!in) continue;
    char *eq = strchr(s, '=');
    if (!eq) continue;
    *eq = '\0';
    if (strcmp(trim(s), key) == 0) {
      free(val);
      val = eng_xstrdup(trim(eq + 1));
    }
  }
  fclose(f);
  return val;
}

static char *home_file(const char *env, const char *name) {
  const char *p = getenv(env);
  if (p && *p) return eng_xstrdup(p);
  const char *home = getenv("HOME");
  if (!home || !*home) return NULL;
  return eng_asprintf("%s/.aws/%s", home, name);
}

static char *env_dup(const char *name) {
  const char *v = getenv(name);
  return v && *v ? eng_xstrdup(v) : NULL;
}

static const char *param_str(const json_t *params, const char *name) {
  const char *v = params ? json_string_value(json_object_get(params, name))
                         : NULL;
  return v && *v ? v : NULL;
}

/* AWS_ENDPOINT_URL_<SERVICE>: the service's name upper-cased. */
static char *service_endpoint(const char *service) {
  char name[64] = "AWS_ENDPOINT_URL_";
  size_t n = strlen(name);
  for (const char *s = service; *s && n < sizeof name - 1; s++)
    name[n++] = isalnum((unsigned char)*s) ? (char)toupper((unsigned char)*s)
                                           : '_';
  name[n] = '\0';
  return env_dup(name);
}

/* The key pair (and session token) of a profile in one file; 0 when the
 * file has both keys, else nothing is kept. */
static int ini_keys(const char *file, const char *profile, int config,
                    char **akid, char **secret, char **token) {
  *akid = ini_get(file, profile, config, "aws_access_key_id");
  *secret = ini_get(file, profile, config, "aws_secret_access_key");
  *token = ini_get(file, profile, config, "aws_session_token");
  if (*akid && *secret) return 0;
  free(*akid);
  free(*secret);
  free(*token);
  *akid = *secret = *token = NULL;
  return -1;
}

static int load_credentials(aws_cfg *cfg, const char *profile,
                            const char *cred_file, const char *conf_file) {
  char *akid = env_dup("AWS_ACCESS_KEY_ID");
  char *secret = env_dup("AWS_SECRET_ACCESS_KEY");
  char *token = NULL;
  if (akid && secret) {
    token = env_dup("AWS_SESSION_TOKEN");
  } else {
    free(akid);
    free(secret);
    if (ini_keys(cred_file, profile, 0, &akid, &secret, &token) != 0 &&
        ini_keys(conf_file, profile, 1, &akid, &secret, &token) != 0)
      return -1;
  }
  cfg->akid = akid;
  cfg->secret = secret;
  cfg->token = token;
  return 0;
}

int aws_cfg_load(const eng_host *host, eng_call *call, const json_t *params,
                 const char *service, aws_cfg *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  cfg->service = eng_xstrdup(service);
  const char *profile = getenv("AWS_PROFILE");
  if (!profile || !*profile) profile = "default";
  char *cred_file = home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
  char *conf_file = home_file("AWS_CONFIG_FILE", "config");

  const char *ep = param_str(params, "endpoint");
  char *epv = ep ? eng_xstrdup(ep) : service_endpoint(service);
  if (!epv) epv = env_dup("AWS_ENDPOINT_URL");
  if (!epv) epv = ini_get(conf_file, profile, 1, "endpoint_url");

  const char *rg = param_str(params, "region");
  cfg->region = rg ? eng_xstrdup(rg) : env_dup("AWS_REGION");
  if (!cfg->region) cfg->region = env_dup("AWS_DEFAULT_REGION");
  if (!cfg->region) cfg->region = ini_get(conf_file, profile, 1, "region");
  if (!cfg->region) cfg->region = eng_xstrdup("us-east-1");

  if (epv) {
    size_t n = strlen(epv);
    while (n > 0 && epv[n - 1] == '/') epv[--n] = '\0';
    if (!strstr(epv, "://")) {
      cfg->endpoint = eng_asprintf("https://%s", epv);
      free(epv);
    } else {
      cfg->endpoint = epv;
    }
    cfg->custom = 1;
  } else {
    cfg->endpoint = eng_asprintf("https://%s.%s.amazonaws.com", service,
                                 cfg->region);
  }

  int rc = load_credentials(cfg, profile, cred_file, conf_file);
  free(cred_file);
  free(conf_file);
  if (rc != 0) {
    snprintf(err, errlen,
             "no AWS credentials: set AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in "
             "~/.aws/credentials (profile '%s' has none)",
             profile);
    aws_cfg_free(cfg);
    return ENG_ERR_AUTH;
  }
  cfg->ca_bundle = env_dup("AWS_CA_BUNDLE");
  if (call && host) {
    host->secret(call, cfg->secret);
    if (cfg->token) host->secret(call, cfg->token);
  }
  return ENG_OK;
}

void aws_cfg_copy(aws_cfg *dst, const aws_cfg *src) {
  dst->service = eng_xstrdup(src->service);
  dst->endpoint = eng_xstrdup(src->endpoint);
  dst->custom = src->custom;
  dst->region = eng_xstrdup(src->region);
  dst->akid = eng_xstrdup(src->akid);
  dst->secret = eng_xstrdup(src->secret);
  dst->token = eng_xstrdup(src->token);
  dst->ca_bundle = eng_xstrdup(src->ca_bundle);
}

void aws_cfg_free(aws_cfg *cfg) {
  free(cfg->service);
  free(cfg->endpoint);
  free(cfg->region);
  free(cfg->akid);
  if (cfg->secret) {
    memset(cfg->secret, 0, strlen(cfg->secret));
    free(cfg->secret);
  }
  if (cfg->token) {
    memset(cfg->token, 0, strlen(cfg->token));
    free(cfg->token);
  }
  free(cfg->ca_bundle);
  memset(cfg, 0, sizeof *cfg);
}
