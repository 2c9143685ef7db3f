/* libFuzzer: an answer from an AWS endpoint (S3 or RDS) as the AWS layer
 * and the provider plugin read it: the XML tree, the error it carries, the
 * RDS instances and snapshots with their times, and the page marker. */
#include <stdlib.h>
#include <string.h>

#include "provider_int.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  const char *buf = (const char *)data;
  char code[128], msg[512];
  aws_error_parse(buf, size, code, sizeof code, msg, sizeof msg);
  aws_xml *x = aws_xml_parse(buf, size);
  if (!x) return 0;
  rds_instance *vi = NULL;
  char *marker = NULL;
  size_t n = rds_parse_instances(x, &vi, &marker);
  for (size_t i = 0; i < n; i++) aws_parse_time(vi[i].created_at);
  rds_instances_free(vi, n);
  free(marker);
  marker = NULL;
  rds_snapshot *vs = NULL;
  n = rds_parse_snapshots(x, &vs, &marker);
  rds_snapshots_free(vs, n);
  free(marker);
  aws_xml_path(x, "Errors/Error/Code");
  aws_xml_free(x);
  return 0;
}
