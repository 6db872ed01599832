#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/k8s/ (`make k8s-validate`,
# also run by `make test-deploy`):
#
#   1. every manifest against the schemas of one pinned Kubernetes version, in
#      strict mode (an unknown or misspelt field fails), with the pinned
#      kubernetes-validate from PyPI, which ships its schemas (no network
#      needed once it is installed);
#   2. every kustomization.yaml lists exactly the manifests beside it, and
#      builds (kubectl kustomize, when kubectl is installed);
#   3. the settings: the ConfigMap and the Secret together hold every variable
#      .env.prod.example sets, each in one of them, with its value there
#      (placeholders for secrets) unless Kubernetes needs another
#      (K8S_VALUES below); the Secret holds exactly the secret variables;
#      and neither holds a name .env.prod.example does not list.
#
# Prints one line per file, then one for the settings; exits 1 on any failure.
# kubernetes-validate is installed on first use into a virtualenv of its own
# under /opt/stockflow (as scripts/services.sh does for schemathesis), so
# neither the system's Python packages nor another version are touched.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_DIR=$ROOT/deploy/k8s

KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes version whose API schemas the manifests must satisfy: the
# oldest we support (the manifests use nothing newer).
KUBERNETES_VERSION=1.33.0
VENV=/opt/stockflow/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
LOG=${TMPDIR:-/tmp}/stockflow-kubernetes-validate-install.log

die() {
  printf 'k8s-validate: error: %s\n' "$*" >&2
  exit 1
}

installed() {
  [[ -x $VENV/bin/kubernetes-validate ]] &&
    [[ $("$VENV/bin/kubernetes-validate" --version 2>/dev/null) == "$KUBERNETES_VALIDATE_VERSION" ]]
}

ensure_kubernetes_validate() {
  installed && return 0
  command -v python3 >/dev/null || die "python3 is needed (apt-get install python3 python3-venv)"
  python3 -c 'import ensurepip, venv' 2>/dev/null || die "python3's venv module is missing (apt-get install python3-venv)"
  mkdir -p "$(dirname "$VENV")" 2>/dev/null && [[ -w $(dirname "$VENV") ]] ||
    die "cannot write $(dirname "$VENV"): run once as root (sudo bash $0)"
  printf '==> kubernetes-validate: pip install kubernetes-validate==%s into %s (log: %s)\n' \
    "$KUBERNETES_VALIDATE_VERSION" "$VENV" "$LOG" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >>"$LOG" 2>&1 || die "python3 -m venv failed (see $LOG)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    >>"$LOG" 2>&1 || die "pip install failed (see $LOG)"
  installed || die "$VENV/bin/kubernetes-validate is not version $KUBERNETES_VALIDATE_VERSION"
}

ensure_kubernetes_validate

failed=0
mapfile -t files < <(cd "$ROOT" && find deploy/k8s -type f \( -name '*.yaml' -o -name '*.yml' \) | LC_ALL=C sort)
((${#files[@]})) || die "no manifests under deploy/k8s/"

for file in "${files[@]}"; do
  if [[ $(basename "$file") == kustomization.y*ml ]]; then
    continue # checked below with the settings: not a Kubernetes API object
  fi
  # --quiet prints only warnings and failures; a warning here is a kind with
  # no schema (a typo in apiVersion or kind), so it fails too.
  if out=$(cd "$ROOT" && "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$file" 2>&1) &&
    [[ -z $out ]]; then
    printf 'ok    %s (Kubernetes %s, strict)\n' "$file" "$KUBERNETES_VERSION"
  else
    printf 'FAIL  %s\n' "$file"
    printf '%s\n' "$out" | sed 's/^/        /'
    failed=1
  fi
done

# Kustomizations and the settings split, with the venv's PyYAML.
"$VENV/bin/python" - "$ROOT" <<'PY' || failed=1
import re
import sys
from pathlib import Path

import yaml

root = Path(sys.argv[1])
k8s = root / "deploy" / "k8s"
ok = True


def fail(subject, problems):
    global ok
    ok = False
    print(f"FAIL  {subject}")
    for problem in problems:
        print(f"        {problem}")


# --- kustomizations: each lists exactly the manifests in its directory ----
for kfile in sorted(k8s.rglob("kustomization.y*ml")):
    rel = kfile.relative_to(root)
    doc = yaml.safe_load(kfile.read_text()) or {}
    listed = set(doc.get("resources", []))
    present = {p.name for p in kfile.parent.iterdir()
               if p.suffix in (".yaml", ".yml") and not p.name.startswith("kustomization.")}
    problems = [f"lists {r}, which does not exist" for r in sorted(listed - present)]
    problems += [f"does not list {r}" for r in sorted(present - listed)]
    if problems:
        fail(rel, problems)
    else:
        print(f"ok    {rel} (lists every manifest beside it)")

# --- the settings: ConfigMap + Secret against .env.prod.example -----------
# The variables .env.prod.example marks secret (its comments say "secret").
SECRETS = {
    "DATABASE_URL", "AMQP_URL",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "BACKUP_S3_SECRET_ACCESS_KEY", "BACKUP_S3_SESSION_TOKEN",
    "BACKUP_ENCRYPTION_IDENTITY", "ALERT_WEBHOOK_SECRET",
}
# Where Kubernetes needs another value than .env.prod.example's (the compose
# stack's): media on S3, since replicas on several nodes share no disk;
# backups on S3 too; no local directories for the entrypoint to create on a
# read-only root filesystem (empty means unset).
K8S_VALUES = {
    "STORAGE_BACKEND": "s3",
    "MEDIA_ROOT": "",
    "BACKUP_STORAGE_BACKEND": "s3",
    "BACKUP_ROOT": "",
}

example_text = (root / ".env.prod.example").read_text()
example_set = {}
for line in example_text.splitlines():
    m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
    if m:
        example_set[m.group(1)] = m.group(2)
# Every name the file mentions, set, commented out or in prose.
example_listed = {w for w in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", example_text)}


def objects(kind):
    found = []
    for path in sorted(k8s.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                found.append(doc)
    return found


configmaps = [d for d in objects("ConfigMap") if d["metadata"]["name"] == "stockflow-config"]
secrets = [d for d in objects("Secret") if d["metadata"]["name"] == "stockflow-secrets"]
problems = []
if len(configmaps) != 1 or len(secrets) != 1:
    problems.append(f"expected one ConfigMap stockflow-config and one Secret stockflow-secrets, "
                    f"found {len(configmaps)} and {len(secrets)}")
else:
    import base64
    cm = {k: str(v) for k, v in (configmaps[0].get("data") or {}).items()}
    sec = {k: str(v) for k, v in (secrets[0].get("stringData") or {}).items()}
    sec.update({k: base64.b64decode(v).decode() for k, v in (secrets[0].get("data") or {}).items()})
    for name in sorted(set(cm) & set(sec)):
        problems.append(f"{name} is in both the ConfigMap and the Secret")
    for name in sorted(set(example_set) - set(cm) - set(sec)):
        problems.append(f"{name} is set in .env.prod.example but in neither the ConfigMap nor the Secret")
    for name in sorted((set(cm) | set(sec)) - example_listed):
        problems.append(f"{name} is not a variable .env.prod.example lists")
    for name in sorted(set(cm) & SECRETS):
        problems.append(f"{name} is a secret: it belongs in the Secret, not the ConfigMap")
    for name in sorted(set(sec) - SECRETS):
        problems.append(f"{name} is not secret: it belongs in the ConfigMap")
    for name in sorted(SECRETS - set(sec)):
        problems.append(f"{name} (a secret) is missing from the Secret")
    for name in sorted(SECRETS - example_listed):
        problems.append(f"{name} is no longer in .env.prod.example: update SECRETS in this script")
    for name, value in sorted({**cm, **sec}.items()):
        if name not in example_set:
            continue
        want = K8S_VALUES.get(name, example_set[name])
        if value != want:
            problems.append(f"{name}={value!r}, but {want!r} is expected "
                            f"({'Kubernetes needs it' if name in K8S_VALUES else 'as in .env.prod.example'})")
    # Every workload reads both.
    for kind in ("Deployment", "Job"):
        for doc in objects(kind):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                refs = {(k, v["name"]) for e in c.get("envFrom", []) for k, v in e.items()}
                for want in (("configMapRef", "stockflow-config"), ("secretRef", "stockflow-secrets")):
                    if want not in refs:
                        problems.append(f"{kind} {doc['metadata']['name']}: container {c['name']} "
                                        f"lacks envFrom {want[0]} {want[1]}")
if problems:
    fail("settings: ConfigMap + Secret vs .env.prod.example", problems)
else:
    print(f"ok    settings: ConfigMap ({len(cm)}) + Secret ({len(sec)}) hold the {len(example_set)} "
          f"variables .env.prod.example sets, each once")
sys.exit(0 if ok else 1)
PY

# Each kustomization builds, where kubectl (with its built-in kustomize) is at
# hand; it needs no cluster.
if command -v kubectl >/dev/null 2>&1; then
  while IFS= read -r kdir; do
    if out=$(kubectl kustomize "$ROOT/$kdir" 2>&1 >/dev/null); then
      printf 'ok    %s (kubectl kustomize builds it)\n' "$kdir"
    else
      printf 'FAIL  %s: kubectl kustomize\n' "$kdir"
      printf '%s\n' "$out" | sed 's/^/        /'
      failed=1
    fi
  done < <(cd "$ROOT" && find deploy/k8s -name 'kustomization.y*ml' -printf '%h\n' | LC_ALL=C sort)
else
  echo "skip  kubectl kustomize (no kubectl here)"
fi

if ((failed)); then
  echo "k8s-validate: FAILED" >&2
  exit 1
fi
echo "k8s-validate: all manifests valid"
