/* libFuzzer: an inventory's text through `engine fleet render`'s checks
 * (keys, names, cron schedules, their spreading and whether they ever
 * fire in the time zone, params, durations),
 * then every manifest out as YAML and back: the text must parse to the
 * same values, whatever the strings in it (the quoting of the emitter). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  eng__diags d = {0};
  d.quiet = true;
  /* no directory: no file is read, only the image's runbooks exist */
  eng__fleet *f = eng__fleet_parse("fuzz.yaml", NULL, NULL, (const char *)data,
                                   size, &d);
  for (size_t i = 0; f && i < eng__fleet_count(f); i++) {
    json_t *docs = eng__fleet_docs(f, i);
    size_t k;
    json_t *doc;
    json_array_foreach(docs, k, doc) {
      eng__buf b = {0};
      eng__yaml_emit(&b, doc);
      eng__diags d2 = {0};
      d2.quiet = true;
      eng__node *n = eng__yaml_parse("out.yaml", b.data, b.len, &d2);
      json_t *back = n ? eng__node_to_json(n) : NULL;
      if (!back || !json_equal(back, doc)) {
        fprintf(stderr, "manifest does not read back as written:\n%s\n%s",
                b.data, d2.text.data ? d2.text.data : "");
        abort();
      }
      json_decref(back);
      eng__node_free(n);
      eng__diags_free(&d2);
      eng__buf_free(&b);
    }
    json_decref(docs);
  }
  eng__fleet_free(f);
  eng__diags_free(&d);
  return 0;
}
