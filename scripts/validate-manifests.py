#!/usr/bin/env python3
"""Validate Kubernetes manifests offline against the API schemas.

    target/venv/bin/python scripts/validate-manifests.py [-k VERSION] FILE...

Built-in kinds are checked with kubernetes-validate's strict schemas (an
unknown field is an error); the prometheus-operator ServiceMonitor with the
JSON schema of the cloudcoil.models.prometheus_operator model, made strict
the same way. Both sets of schemas ship inside those PyPI packages, so
nothing is fetched. Then the objects are checked against each other: the
selectors and port names that tie DaemonSet, Service and ServiceMonitor
together. Prints one line per object; exits 1 if anything failed.
"""
import argparse
import sys

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor


def strict(schema):
    """Forbid properties a schema does not declare, everywhere in it."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def validate(doc, version):
    if doc.get("kind") == "ServiceMonitor":
        schema = strict(ServiceMonitor.model_json_schema(by_alias=True))
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def cross_check(docs):
    """Return the problems in how the objects refer to each other."""
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for ds in by_kind.get("DaemonSet", []):
        pod = ds["spec"]["template"]
        if not matches(ds["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
            problems.append("DaemonSet selector does not match its pod labels")
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        for svc in by_kind.get("Service", []):
            if not matches(svc["spec"]["selector"], pod["metadata"]["labels"]):
                problems.append(f"Service {svc['metadata']['name']} selects no DaemonSet pod")
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                    problems.append(f"Service targetPort {p['targetPort']} is no container port")
    for sm in by_kind.get("ServiceMonitor", []):
        svcs = [s for s in by_kind.get("Service", [])
                if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if not svcs:
            problems.append("ServiceMonitor selects no Service")
        names = {p.get("name") for s in svcs for p in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            if ep.get("port") not in names:
                problems.append(f"ServiceMonitor endpoint port {ep.get('port')} is no Service port")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", "--kubernetes-version", default="1.30.0")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    failed = False
    docs = []
    for f in args.files:
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is None:
                    continue
                name = f"{f}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                try:
                    validate(doc, args.kubernetes_version)
                    print(f"PASS  {name}")
                    docs.append(doc)
                except Exception as e:  # every validator error is a failure to report
                    failed = True
                    print(f"FAIL  {name}: {getattr(e, 'message', e)}")
    for p in cross_check(docs):
        failed = True
        print(f"FAIL  {p}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
