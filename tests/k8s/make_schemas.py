#!/usr/bin/env python3
"""Turn the Kubernetes API's OpenAPI v3 documents into strict, self-contained
JSON Schemas (draft 7) for the kinds `engine fleet render` writes.

    python3 tests/k8s/make_schemas.py OPENAPI_DIR [OUT_DIR]

OPENAPI_DIR holds `apis__batch__v1_openapi.json` and `api__v1_openapi.json`
as found in kubernetes/kubernetes under api/openapi-spec/v3/ (README.md
says which release the committed schemas come from). OUT_DIR defaults to
tests/k8s/schemas/. For each kind the output holds only the definitions
reachable from it:

* every `$ref` to `#/components/schemas/NAME` points into `definitions`;
  the OpenAPI form `allOf: [{$ref}]` (used to attach a default or a
  description to a reference) becomes the bare reference;
* every object schema that lists `properties` gets
  `additionalProperties: false`, so a misspelt field fails, as the API
  server's strict field validation rejects it;
* `apiVersion` and `kind` must be the kind's own;
* IntOrString stays "an integer or a string"; Quantity is a number or a
  string in Kubernetes' quantity syntax;
* descriptions, defaults and `x-kubernetes-*` extensions are dropped (they
  do not constrain a document).
"""
import json
import pathlib
import sys

KINDS = [
    # (output file, OpenAPI document, definition, apiVersion, kind)
    ('cronjob-batch-v1.json', 'apis__batch__v1_openapi.json',
     'io.k8s.api.batch.v1.CronJob', 'batch/v1', 'CronJob'),
    ('job-batch-v1.json', 'apis__batch__v1_openapi.json',
     'io.k8s.api.batch.v1.Job', 'batch/v1', 'Job'),
    ('configmap-v1.json', 'api__v1_openapi.json',
     'io.k8s.api.core.v1.ConfigMap', 'v1', 'ConfigMap'),
    ('secret-v1.json', 'api__v1_openapi.json',
     'io.k8s.api.core.v1.Secret', 'v1', 'Secret'),
]

REF = '#/components/schemas/'
QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity'
INT_OR_STRING = 'io.k8s.apimachinery.pkg.util.intstr.IntOrString'
QUANTITY_RE = (r'^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)'
               r'([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$')
DROP = {'description', 'default', 'example', 'externalDocs'}


def convert(node, refs):
    """A copy of one OpenAPI schema node as JSON Schema; names it refers
    to are added to refs."""
    if isinstance(node, list):
        return [convert(x, refs) for x in node]
    if not isinstance(node, dict):
        return node
    if '$ref' in node:
        name = node['$ref'][len(REF):]
        refs.add(name)
        return {'$ref': '#/definitions/' + name}
    all_of = node.get('allOf')
    if all_of and len(all_of) == 1 and '$ref' in all_of[0]:
        # {allOf: [{$ref}], default, description}: the reference itself
        return convert(all_of[0], refs)
    out = {}
    for k, v in node.items():
        if k in DROP or k.startswith('x-'):
            continue
        if k == 'properties':
            out[k] = {p: convert(s, refs) for p, s in v.items()}
        elif k == 'nullable':
            continue
        else:
            out[k] = convert(v, refs)
    if node.get('nullable') and isinstance(out.get('type'), str):
        out['type'] = [out['type'], 'null']
    if 'properties' in out and 'additionalProperties' not in out:
        out['additionalProperties'] = False
    return out


def special(name, node):
    if name == QUANTITY:
        return {'oneOf': [{'type': 'string', 'pattern': QUANTITY_RE},
                          {'type': 'number'}]}
    if name == INT_OR_STRING:
        return {'oneOf': [{'type': 'integer'}, {'type': 'string'}]}
    return None


def build(doc, root, api_version, kind):
    schemas = doc['components']['schemas']
    defs = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        refs = set()
        defs[name] = special(name, schemas[name]) or convert(schemas[name], refs)
        pending.extend(sorted(refs - set(defs)))
    return {
        '$schema': 'http://json-schema.org/draft-07/schema#',
        'title': f'{kind} ({api_version}), strict',
        'allOf': [
            {'$ref': '#/definitions/' + root},
            {'type': 'object',
             'required': ['apiVersion', 'kind'],
             'properties': {'apiVersion': {'const': api_version},
                            'kind': {'const': kind}}},
        ],
        'definitions': dict(sorted(defs.items())),
    }


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split('\n\n')[1])
    src = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else \
        pathlib.Path(__file__).resolve().parent / 'schemas'
    out.mkdir(parents=True, exist_ok=True)
    docs = {}
    for fname, docname, root, api_version, kind in KINDS:
        if docname not in docs:
            docs[docname] = json.loads((src / docname).read_text())
        schema = build(docs[docname], root, api_version, kind)
        (out / fname).write_text(json.dumps(schema, indent=1, sort_keys=True) + '\n')
        print(f'{out / fname}: {len(schema["definitions"])} definitions')


if __name__ == '__main__':
    main()
